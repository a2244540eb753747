"""Rendering command results: rich tables for people (readable at 80 columns; ``--wide``
for every column), JSON for programs. Errors go to stderr, results to stdout."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table

from schemahub.ingest.report import IngestReport, Status
from schemahub.timeutil import from_us

if TYPE_CHECKING:
    import pyarrow as pa

    from schemahub.pipeline import CheckpointRow, RepairReport
    from schemahub.quality.checks import CheckResult
    from schemahub.transform.report import TransformReport
    from schemahub.transform.state import Quarantined

_STATUS_STYLE = {
    Status.OK: "green", Status.UP_TO_DATE: "green", Status.PLANNED: "cyan",
    Status.SKIPPED: "yellow", Status.INTERRUPTED: "yellow", Status.FAILED: "red",
}
_RIGHT = ("trades", "requests", "retries", "429s", "trade ids", "skipped ids", "trades/s", "start after id",
          "head id", "rows", "files", "token", "raw files", "raw trades", "rows written", "duplicates",
          "quarantined")


def print_json(payload: Any) -> None:
    sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
    sys.stdout.flush()


def plural(count: int, noun: str) -> str:
    """``1 raw file``, ``2 raw files`` (the last word takes the s)."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> Table:
    out = Table(title=title, title_justify="left")
    for name in columns:
        out.add_column(name, justify="right" if name in _RIGHT else "left",
                       no_wrap=name.endswith("(UTC)") or name in ("trades", "product", "status", "trade ids"))
    for row in rows:
        out.add_row(*row)
    return out


def _time(us: int | None, wide: bool) -> str:
    if us is None:
        return ""
    return from_us(us).strftime("%Y-%m-%d %H:%M:%S.%f" if wide else "%m-%d %H:%M:%S")


def _with_subject(subject: str, message: str) -> str:
    return message if message.startswith(subject) else f"{subject}: {message}"


# -- ingest --------------------------------------------------------------------------------------


def ingest_table(report: IngestReport, wide: bool = False) -> Table:
    if report.dry_run:
        plan = [(p.symbol, p.status.value, "" if p.watermark_before is None else str(p.watermark_before),
                 "" if p.head_id is None else str(p.head_id), f"{p.planned_requests:,}")
                for p in report.products]
        return table(("product", "status", "start after id", "head id", "requests"), plan,
                     f"ingest plan {report.exchange} (dry run: nothing written)")
    title = f"ingest {report.exchange}" + (f"  run {report.run_id}" if wide else "")
    rows: list[list[str]] = []
    for p in report.products:
        stats = p.stats.snapshot()
        status = f"[{_STATUS_STYLE[p.status]}]{p.status.value}[/]"
        narrow = [p.symbol, status, f"{p.trades:,}", _time(p.last_trade_us, wide), f"{stats.rate_limited:,}",
                  f"{p.trades_per_s:,.0f}"]
        if wide:
            ids = "" if p.first_trade_id is None else f"{p.first_trade_id}..{p.last_trade_id}"
            narrow[3:3] = [ids, _time(p.first_trade_us, wide)]
            narrow[-2:-2] = [f"{stats.requests:,}"]
            narrow[-1:-1] = [f"{stats.retries:,}", f"{p.missing_ids:,}"]
        rows.append(narrow)
    columns = ["product", "status", "trades", "last trade (UTC)", "429s", "trades/s"]
    if wide:
        columns[3:3] = ["trade ids", "first trade (UTC)"]
        columns[-2:-2] = ["requests"]
        columns[-1:-1] = ["retries", "skipped ids"]
    return table(columns, rows, title)


def print_table(console: Console, renderable: Table, wide: bool) -> None:
    """``wide``: as wide as the table needs (the terminal wraps it), never squeezed."""
    if wide:
        from rich.measure import Measurement

        needed = Measurement.get(console, console.options, renderable).maximum
        console.print(renderable, width=max(console.width, needed))
    else:
        console.print(renderable)


def print_ingest(report: IngestReport, console: Console, errors: Console, wide: bool = False) -> None:
    if report.products:
        print_table(console, ingest_table(report, wide), wide)
    if report.dry_run and report.estimated_seconds is not None:
        total = sum(p.planned_requests for p in report.products)
        console.print(f"estimated: {plural(total, 'request')}, about {report.estimated_seconds:,.0f} s at "
                      f"{report.exchange}'s rate limit")
    if report.error:
        errors.print(f"[bold red]error:[/] {_with_subject(report.exchange, report.error)}", highlight=False,
                     soft_wrap=True)
        return
    for p in report.products:
        if p.error and p.status is not Status.SKIPPED:
            errors.print(f"[bold red]error:[/] {_with_subject(p.label, p.error)}", highlight=False,
                         soft_wrap=True)
        elif p.error:
            errors.print(f"[yellow]{p.label} skipped: {p.error}[/]", highlight=False, soft_wrap=True)
    if report.interrupted:
        done = sum(1 for p in report.products if p.status is not Status.INTERRUPTED)
        console.print(f"[yellow]{report.exchange}: interrupted - {done} of {len(report.products)} products "
                      "finished; the others keep what was committed and resume on the next run[/]")


def print_repair(report: RepairReport, console: Console, errors: Console) -> None:
    if not report.items:
        console.print("nothing to repair: no quarantined file, unexplained gap, exchange gap due to be "
                      "asked again, or disagreeing cross-check")
        return
    rows = [(f"{i.exchange} {i.symbol}", f"{i.first_id}..{i.last_id}", i.kind.replace("_", " "), i.reason)
            for i in report.items]
    verb = "would fetch" if report.dry_run else "fetched"
    console.print(table(("product", "ids", "what", "why"), rows, f"repair: {verb}"))
    for result in report.reports:
        print_ingest(result, console, errors)
    if report.transform is not None:
        print_transform(report.transform, console)
    if not report.dry_run and any(i.kind == "cross_check" for i in report.items):
        console.print("next: `schemahub certify` re-checks the repaired days (a disagreeing day stays "
                      "incomplete until the venue's figure and ours agree)")


def checkpoints_table(rows: Sequence[CheckpointRow], wide: bool = False) -> Table:
    """Both ends of every product's covered history (ids too with ``--wide``)."""
    moment = "%Y-%m-%d %H:%M:%S" if wide else "%Y-%m-%d %H:%M"
    out = []
    for row in rows:
        cp = row.checkpoint
        if cp is None:
            out.append([row.exchange, row.symbol, "[red]corrupt[/]", "", ""] + (["", "", ""] if wide else []))
            continue
        first = cp.first_trade_time.strftime(moment) if cp.first_trade_time else "?"
        last = cp.last_trade_time.strftime(moment) if cp.last_trade_time else ""
        state = "extending" if cp.backfill is not None else "ok"
        out.append([cp.exchange, cp.symbol, state, first, last])
        if wide:
            updated = cp.updated_at.isoformat(timespec="seconds")
            out[-1] += [str(cp.start_after_id), str(cp.last_trade_id), updated]
    columns = ["exchange", "product", "state", "first trade (UTC)", "last trade (UTC)"]
    return table(columns + (["start after id", "last trade id", "updated"] if wide else []), out)


def quarantine_table(records: Sequence[Quarantined], wide: bool = False) -> Table:
    rows = []
    for r in records:
        name = r.key.rsplit("/", 1)[-1] if not wide else r.key
        reason = r.reason if wide or len(r.reason) <= 60 else r.reason[:57] + "..."
        rows.append((name, reason, r.detected_at.strftime("%Y-%m-%d %H:%M")))
    return table(("file", "reason", "since (UTC)"), rows, plural(len(records), "quarantined raw file"))


# -- transform, checks --------------------------------------------------------------------------------


def print_transform(report: TransformReport, console: Console) -> None:
    if not report.products and not report.errors:
        version = report.table_version_before
        console.print("nothing new to transform" + ("" if version is None else f" (table version {version})"))
        return
    if report.dry_run:
        title = "transform plan (dry run: nothing written)"
    elif report.table_version_before is None:
        title = f"{'rebuild' if report.rebuild else 'transform'}: created the table (version " \
                f"{report.table_version_after})  {report.elapsed_s:.2f}s"
    else:
        title = f"{'rebuild' if report.rebuild else 'transform'}: table version " \
                f"{report.table_version_before} -> {report.table_version_after}  {report.elapsed_s:.2f}s"
    rows = [(f"{p.exchange} {p.symbol}", f"{p.files:,}", f"{p.raw_trades:,}",
             "-" if report.dry_run else f"{p.rows_written:,}", f"{p.duplicates_dropped:,}",
             f"{p.quarantined:,}") for p in report.products]
    console.print(table(("product", "raw files", "raw trades", "rows written", "duplicates", "quarantined"),
                        rows, title))
    if not report.dry_run and report.elapsed_s > 0:
        console.print(f"{plural(report.rows_written, 'row')} in {report.elapsed_s:.2f}s "
                      f"({report.raw_trades / report.elapsed_s:,.0f} raw trades/s)")
    if report.commits > 1:
        console.print(f"{report.commits} commits (rounds of products)")
    if report.skipped_held:
        console.print(f"left to another transform process: {', '.join(report.skipped_held)}", highlight=False)
    for record in report.quarantined:
        console.print(f"[yellow]quarantined {record.key}: {record.reason}[/]", highlight=False)
    for message in report.errors:
        console.print(f"[red]{message}[/]", highlight=False)


_CHECK_STYLE = {"ok": "green", "fail": "red", "skip": "yellow"}


def detail_line(detail: dict[str, Any]) -> str:
    """One check detail as ``key=value`` pairs (no Python reprs)."""
    parts = []
    for key, value in detail.items():
        if isinstance(value, list | tuple):
            shown = ", ".join(_range(v) for v in value[:5]) + (", ..." if len(value) > 5 else "")
            parts.append(f"{key}=[{shown}]")
        elif value is not None:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _range(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}..{value[1]}"
    return str(value)


def print_checks(results: list[CheckResult], console: Console) -> None:
    rows = [(r.name, f"[{_CHECK_STYLE[r.status]}]{r.status}[/]", r.summary) for r in results]
    console.print(table(("check", "status", "summary"), rows, "data quality"))
    for r in results:
        if r.status == "fail":
            for detail in r.details[:5]:
                console.print(f"[red]{r.name}:[/] {detail_line(detail)}", highlight=False)


# -- query ----------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A value for the terminal: floats without binary noise (15 significant digits)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return value.__format__(".15g") if math.isfinite(value) else str(value)
    return str(value)


def write_result(result: pa.Table, fmt: str, path: Path | None, console: Console, stdout: TextIO) -> None:
    """A query result as a terminal table, CSV, JSON lines or Parquet."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        assert path is not None
        pq.write_table(result, path, compression="zstd")
        console.print(f"wrote {plural(result.num_rows, 'row')} to {path}")
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
    shown = result.slice(0, 1000)
    console.print(table(result.column_names, [[_cell(v) for v in row.values()] for row in shown.to_pylist()]))
    if result.num_rows > shown.num_rows:
        console.print(f"({result.num_rows:,} rows; showing the first {shown.num_rows:,}: "
                      "use --format and --output for all)")
