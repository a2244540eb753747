"""Commands of the table stages: transform, compact, query, check."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from schemahub import pipeline
from schemahub.cli import output
from schemahub.cli.app import (
    JsonOption,
    LakeOption,
    app,
    context,
    err,
    errors,
    out,
    parse_duration,
    settings_for,
    stop_on_signals,
)
from schemahub.cli.progress import LogStage, TerminalStage
from schemahub.errors import ConfigError

EXIT_NEEDS_ATTENTION = 4


def stage_progress(stage: str, unit: str = "files") -> TerminalStage | LogStage:
    """A bar on a terminal, periodic log lines elsewhere."""
    return TerminalStage(err, stage, unit) if context.interactive else LogStage(stage, unit)


@app.command()
@errors
def transform(
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Rebuild the whole table from all raw files, replacing it in one commit.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report what would be read; write nothing.")] = False,
    retry_quarantined: Annotated[bool, typer.Option(
        "--retry-quarantined", help="Try quarantined raw files again (after repairing them).")] = False,
    lock_wait: Annotated[float, typer.Option(
        min=0, help="--rebuild: seconds to wait for a compaction of the table to end (0: stop at once).")]
        = 0.0,
    round_ids: Annotated[int | None, typer.Option(
        min=1, help="Trade ids per commit (default 200M). Smaller rounds let several transform processes "
                    "share a backfill sooner.")] = None,
    json_output: JsonOption = False,
    lake: LakeOption = None,
) -> None:
    """Move committed raw trades into the unified Delta table, exactly once.

    Several transform processes (on one host or many) can run at once: each leases the
    products it transforms, so they share the work product by product.
    """
    from schemahub.transform.report import TransformOptions

    options = TransformOptions(rebuild=rebuild, dry_run=dry_run, retry_quarantined=retry_quarantined)
    with stop_on_signals() as stop, stage_progress("rebuild" if rebuild else "transform") as progress:
        report = pipeline.transform(settings_for(lake), options, progress=progress, stop=stop,
                                    lock_wait_s=lock_wait, round_ids=round_ids)
    if json_output:
        output.print_json(report.to_dict())
    else:
        output.print_transform(report, out)
    if report.needs_attention:
        raise typer.Exit(EXIT_NEEDS_ATTENTION)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise ConfigError(f"--target-size {text!r} is not a size like 256MB or 1GB")
    unit = (match[2] or "B").upper().replace("I", "")
    factor = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit]
    return int(float(match[1]) * factor)


@app.command()
@errors
def compact(
    target_size: Annotated[str, typer.Option(help="Target file size, e.g. 256MB.")] = "256MB",
    zorder: Annotated[bool, typer.Option("--zorder", help="Z-order files by symbol, trade_ts.")] = False,
    vacuum: Annotated[bool, typer.Option(
        "--vacuum", help="Afterwards delete files no version within --retain-hours uses.")] = False,
    vacuum_dry_run: Annotated[bool, typer.Option(
        "--vacuum-dry-run", help="List the files a vacuum would delete.")] = False,
    retain_hours: Annotated[int, typer.Option(
        help="Keep files any version of the last N hours still reads (guard: at least 1).")] = 168,
    lock_wait: Annotated[float, typer.Option(
        min=0, help="Seconds to wait for another rewrite of the table to end (0: stop at once).")] = 0.0,
    lake: LakeOption = None,
) -> None:
    """Rewrite small table files into large ones in one atomic commit; vacuum on request."""
    size = parse_size(target_size)
    with stop_on_signals() as stop, stage_progress("compact", unit="") as progress:
        progress.start(None)
        result = pipeline.compact(settings_for(lake), target_size=size, zorder=zorder, vacuum=vacuum,
                                  retain_hours=retain_hours, dry_run_vacuum=vacuum_dry_run,
                                  lock_wait_s=lock_wait, stop=stop)
    if result.files_removed == 0:
        out.print(f"nothing to compact: every file is already large (table version {result.version_after})")
    else:
        out.print(f"compacted: version {result.version_before} -> {result.version_after}, "
                  f"{output.plural(result.files_removed, 'file')} rewritten into {result.files_added:,}")
    if vacuum or vacuum_dry_run:
        verb = "would delete" if vacuum_dry_run and not vacuum else "deleted"
        out.print(f"vacuum {verb} {output.plural(len(result.vacuumed), 'file')} no version of the last "
                  f"{retain_hours}h reads")


Format = Literal["table", "csv", "json", "parquet"]


@app.command()
@errors
def query(
    sql: Annotated[str | None, typer.Argument(metavar="SQL", help="SQL over the view `trades`.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the SQL from a file.")] = None,
    format: Annotated[Format, typer.Option(
        "--format", help="table, csv, json (lines) or parquet.")] = "table",
    output_file: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
    version: Annotated[int | None, typer.Option(help="Query an older table version.")] = None,
    as_of: Annotated[str | None, typer.Option(
        help="Query the version current at this ISO time (time travel).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", metavar="NAME=VALUE", help="A named parameter for $NAME in the SQL (repeatable).")] = None,
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="Allow statements that write files or change the session (COPY ... TO, "
                               "CREATE, INSERT, ATTACH ...). Off: a read-only session.")] = False,
    lake: LakeOption = None,
) -> None:
    """Run SQL with DuckDB over the unified table (view `trades`); every statement's result is shown."""
    from schemahub.query.engine import read_sql_file

    if (sql is None) == (file is None):
        raise ConfigError("give the SQL either as an argument or with --file")
    text = sql if sql is not None else read_sql_file(str(file))
    if format == "parquet" and output_file is None:
        raise ConfigError("--format parquet needs --output FILE")
    moment = _parse_time(as_of) if as_of else None
    engine = pipeline.query_engine(settings_for(lake), version=version, as_of=moment)
    try:
        results = engine.script(text, _params(param or []), allow_writes=allow_writes)
    finally:
        engine.close()
    shown = [r for r in results if r.table.num_columns] or results[-1:]
    if len(shown) > 1 and format in ("parquet", "csv", "json") and output_file is not None:
        raise ConfigError(f"--output takes one result, and the SQL has {len(shown)} statements with results")
    for number, result in enumerate(shown, start=1):
        if len(shown) > 1 and format == "table":
            out.print(f"[bold]statement {number}:[/] {result.sql[:100]}", highlight=False)
        output.write_result(result.table, format, output_file, out, sys.stdout)


def _params(pairs: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"--param {pair!r} is not name=value")
        params[name] = value
    return params


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as-of {text!r} is not an ISO-8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.now().astimezone().tzinfo)


@app.command()
@errors
def certify(
    exchange: Annotated[str | None, typer.Option(
        help="Only these exchanges (comma-separated; default: all).")] = None,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Also write every certificate as JSON lines to DIR/certificates.jsonl.")] = None,
    cross_check: Annotated[bool, typer.Option(
        "--cross-check/--no-cross-check",
        help="Compare each day with the venue's own aggregates (klines, candles, OHLC): network requests.")]
        = True,
    json_output: JsonOption = False,
    lake: LakeOption = None,
) -> None:
    """Issue completeness certificates for closed days (new or changed since the last run)."""
    from schemahub.quality import certificates

    chosen = {e.strip() for e in exchange.split(",") if e.strip()} if exchange else None
    settings = settings_for(lake)
    with stop_on_signals() as stop:
        report = pipeline.certify(settings, chosen, cross_check=cross_check, stop=stop)
    if export is not None:
        rows = certificates.Certificates(pipeline.open_backends(settings, create=False).storage).rows()
        export.mkdir(parents=True, exist_ok=True)
        target = export / "certificates.jsonl"
        partial = target.with_suffix(".jsonl.partial")
        partial.write_text(certificates.json_lines(r for r in rows if not chosen or r["exchange"] in chosen))
        partial.replace(target)  # whole or absent
    if json_output:
        output.print_json(report.to_dict())
        return
    statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(report.by_status.items())) or "none new"
    out.print(f"certified on table version {report.table_version}: {report.computed:,} day(s) computed "
              f"({statuses}); {report.unchanged:,} unchanged")
    if export is not None:
        out.print(f"certificates written to {export / 'certificates.jsonl'}")


@app.command()
@errors
def check(
    freshness: Annotated[str, typer.Option(help="Newest trade per product must be this recent.")] = "2h",
    deep: Annotated[bool, typer.Option(
        "--deep",
        help="Also re-map every raw file and compare it with the table row by row (slow).")] = False,
    json_output: JsonOption = False,
    lake: LakeOption = None,
) -> None:
    """Data-quality checks; exit status 1 when any fails."""
    from schemahub.quality.options import CheckOptions

    options = CheckOptions(freshness=parse_duration(freshness, "--freshness"), deep=deep)
    results = pipeline.check(settings_for(lake), options)
    if json_output:
        output.print_json([vars(r) for r in results])
    else:
        output.print_checks(results, out)
    if any(r.status == "fail" for r in results):
        raise typer.Exit(1)
