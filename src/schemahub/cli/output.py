"""Rendering command results: rich tables for people, JSON for programs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table

from schemahub.ingest.report import IngestReport, ProductReport, Status
from schemahub.sources.base import us_to_datetime

if TYPE_CHECKING:
    import pyarrow as pa

    from schemahub.quality.checks import CheckResult
    from schemahub.transform.runner import TransformReport

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
    if report.error:
        console.print(f"[red]{report.exchange}: {report.error}[/]")
        return
    console.print(ingest_table(report))
    if report.dry_run and report.estimated_seconds is not None:
        total = sum(p.planned_requests for p in report.products)
        console.print(f"estimated: {total:,} requests, about {report.estimated_seconds:,.0f} s "
                      "at the configured rate limit")
    for p in report.products:
        if p.error:
            style = "red" if p.status is Status.FAILED else "yellow"
            console.print(f"[{style}]{p.symbol}: {p.error}[/]")


def print_transform(report: TransformReport, console: Console) -> None:
    if not report.products and not report.errors:
        console.print(f"nothing new to transform (table version {report.table_version_before})")
        return
    title = "transform plan (dry run: nothing written)" if report.dry_run else (
        f"{'rebuild' if report.rebuild else 'transform'}: table version "
        f"{report.table_version_before} -> {report.table_version_after}  ({report.elapsed_s:.2f}s)")
    table = Table(title=title, title_justify="left")
    for col in ("product", "raw files", "raw trades", "rows written", "duplicates dropped",
                "quarantined", "cursor"):
        table.add_column(col, justify="left" if col in ("product", "cursor") else "right")
    for p in report.products:
        cursor = "" if p.cursor_after is None else f"({p.cursor_after.from_id}, {p.cursor_after.through_id}]"
        table.add_row(f"{p.exchange} {p.symbol}", f"{p.files:,}", f"{p.raw_trades:,}",
                      "-" if report.dry_run else f"{p.rows_written:,}", f"{p.duplicates_dropped:,}",
                      f"{p.quarantined:,}", cursor)
    console.print(table)
    if not report.dry_run and report.elapsed_s > 0:
        console.print(f"{report.rows_written:,} rows in {report.elapsed_s:.2f}s "
                      f"({report.raw_trades / report.elapsed_s:,.0f} raw trades/s)")
    for record in report.quarantined:
        console.print(f"[yellow]quarantined {record.key}: {record.reason}[/]")
    for message in report.errors:
        console.print(f"[red]{message}[/]")


_CHECK_STYLE = {"ok": "green", "fail": "red", "skip": "yellow"}


def print_checks(results: list[CheckResult], console: Console) -> None:
    table = Table(title="data quality", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("summary")
    for r in results:
        table.add_row(r.name, f"[{_CHECK_STYLE[r.status]}]{r.status}[/]", r.summary)
    console.print(table)
    for r in results:
        if r.status == "fail":
            for detail in r.details[:5]:
                console.print(f"[red]{r.name}:[/] {detail}")


def write_result(result: pa.Table, fmt: str, path: Path | None, console: Console, stdout: TextIO) -> None:
    """A query result as a terminal table, CSV, JSON lines or Parquet."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        assert path is not None
        pq.write_table(result, path, compression="zstd")
        console.print(f"wrote {result.num_rows:,} rows to {path}")
        return
    if fmt == "csv":
        sink: Any = path if path is not None else pa.output_stream(stdout.buffer)
        pa_csv.write_csv(result, sink)
        return
    if fmt == "json":
        lines = b"".join(orjson.dumps(row, default=str) + b"\n" for row in result.to_pylist())
        if path is not None:
            path.write_bytes(lines)
        else:
            stdout.buffer.write(lines)
            stdout.flush()
        return
    table = Table(*result.column_names)
    shown = result.slice(0, 1000)
    for row in shown.to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)
    if result.num_rows > shown.num_rows:
        console.print(f"({result.num_rows:,} rows; showing the first {shown.num_rows:,}: "
                      "use --format and --output for all)")
