"""Rendering command results: rich tables for people, JSON for programs."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from schemahub.ingest.report import IngestReport, ProductReport, Status
from schemahub.sources.base import us_to_datetime

_STATUS_STYLE = {
    Status.OK: "green", Status.UP_TO_DATE: "green", Status.PLANNED: "cyan",
    Status.SKIPPED: "yellow", Status.INTERRUPTED: "yellow", Status.FAILED: "red",
}


def print_json(payload: Any) -> None:
    sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
    sys.stdout.flush()


def _time(us: int | None) -> str:
    return "" if us is None else us_to_datetime(us).strftime("%Y-%m-%d %H:%M:%S.%f")


def _ids(p: ProductReport) -> str:
    if p.first_trade_id is None:
        return ""
    return f"{p.first_trade_id}..{p.last_trade_id}"


def ingest_table(report: IngestReport) -> Table:
    title = (f"ingest plan {report.exchange} (dry run: nothing written)" if report.dry_run
             else f"ingest {report.exchange}  run {report.run_id}")
    table = Table(title=title, title_justify="left")
    if report.dry_run:
        for col in ("product", "status", "start after id", "head id", "requests"):
            table.add_column(col, justify="right" if col != "product" else "left")
        for p in report.products:
            table.add_row(p.symbol, p.status.value, str(p.watermark_before or ""), str(p.head_id or ""),
                          f"{p.planned_requests:,}")
        return table
    columns = ("product", "status", "trades", "trade ids", "first trade (UTC)", "last trade (UTC)",
               "requests", "retries", "429s", "skipped ids", "trades/s")
    for col in columns:
        table.add_column(col, justify="left" if col in ("product", "status", "trade ids") else "right")
    for p in report.products:
        stats = p.stats.snapshot()
        table.add_row(
            p.symbol, f"[{_STATUS_STYLE[p.status]}]{p.status.value}[/]", f"{p.trades:,}", _ids(p),
            _time(p.first_trade_us), _time(p.last_trade_us), f"{int(stats['requests']):,}",
            f"{int(stats['retries']):,}", f"{int(stats['rate_limited']):,}", f"{p.missing_ids:,}",
            f"{p.trades_per_s:,.0f}",
        )
    return table


def print_ingest(report: IngestReport, console: Console) -> None:
    console.print(ingest_table(report))
    if report.dry_run and report.estimated_seconds is not None:
        total = sum(p.planned_requests for p in report.products)
        console.print(f"estimated: {total:,} requests, about {report.estimated_seconds:,.0f} s "
                      "at the configured rate limit")
    for p in report.products:
        if p.error:
            style = "red" if p.status is Status.FAILED else "yellow"
            console.print(f"[{style}]{p.symbol}: {p.error}[/]")
