"""``schemahub export``: days of the table as files other tools read (Tardis' layout or ours)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from schemahub import pipeline
from schemahub.cli import output
from schemahub.cli.app import (
    JsonOption,
    LakeOption,
    app,
    errors,
    out,
    settings_for,
    split_names,
    stop_on_signals,
)
from schemahub.errors import ConfigError
from schemahub.query.export import FORMATS, ExportRequest


@app.command()
@errors
def export(
    to: Annotated[str, typer.Option("--output", "-o", help="A folder, or s3://bucket/prefix.")],
    exchange: Annotated[str | None, typer.Option(help="Only these exchanges (comma-separated).")] = None,
    symbols: Annotated[str | None, typer.Option(help="Only these symbols (comma-separated: BTC-USDT).")]
        = None,
    start: Annotated[str | None, typer.Option(help="First UTC day (YYYY-MM-DD; default: the first).")] = None,
    end: Annotated[str | None, typer.Option(help="Last UTC day, included (default: the last).")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"{' or '.join(FORMATS)}.")] = "csv.gz",
    layout: Annotated[str, typer.Option(
        help="tardis: Tardis.dev's trades columns and file names; native: the unified table's columns.")]
        = "tardis",
    json_output: JsonOption = False,
    lake: LakeOption = None,
) -> None:
    """Write one file per (exchange, symbol, UTC day), the day's certificate beside it.

    Atomic per file; a rerun skips files already written with the same content.
    """
    request = ExportRequest(split_names(exchange), split_names(symbols), _day(start, "--start"),
                            _day(end, "--end"), fmt, layout)  # type: ignore[arg-type] # it checks them
    with stop_on_signals() as stop:
        report = pipeline.export(settings_for(lake), to, request, stop=stop)
    if json_output:
        output.print_json(report.to_dict())
    else:
        out.print(f"exported {report.rows:,} trades: {len(report.written)} file(s) written, "
                  f"{len(report.skipped)} already there (table version {report.table_version}) -> {to}")
    if report.interrupted:
        raise typer.Exit(130)


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a day (YYYY-MM-DD)") from None
