"""``schemahub run``: the operating routine (ingest -> transform -> repair -> certify -> check)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from schemahub import routine
from schemahub.cli import output
from schemahub.cli.app import (
    ExchangesOption,
    JsonOption,
    LakeOption,
    ProductsOption,
    app,
    errors,
    out,
    parse_duration,
    parse_since,
    settings_for,
    split_names,
    stop_on_signals,
)
from schemahub.ingest import exchanges as ingest_exchanges
from schemahub.quality.options import CheckOptions
from schemahub.sources.registry import DEFAULT_EXCHANGE

_STYLE = {"ok": "green", "attention": "yellow", "failed": "red", "skipped": "dim", "interrupted": "yellow"}


@app.command()
@errors
def run(
    exchange: ExchangesOption = DEFAULT_EXCHANGE,
    products: ProductsOption = None,
    since: Annotated[str | None, typer.Option(
        help="Where a new product's history starts: ISO time or a duration ago (default 24h ago).")] = None,
    every: Annotated[str | None, typer.Option(
        help="Run again this long after each pass started (15m, 1h) until SIGTERM/SIGINT.")] = None,
    freshness: Annotated[str, typer.Option(help="check: newest trade per product must be this recent.")]
        = "2h",
    json_output: JsonOption = False,
    lake: LakeOption = None,
) -> None:
    """Run the routine once (or --every): ingest, transform, repair, certify, check.

    One summary and one exit status: 0 when every step is well, 1 when one failed or needs
    attention, 130 when stopped inside a step. A stop between two passes ends with the last
    pass's status.
    """
    settings = settings_for(lake)
    period = parse_duration(every, "--every").total_seconds() if every is not None else None
    check = CheckOptions(freshness=parse_duration(freshness, "--freshness"))
    since_us = parse_since(since) if since is not None else None
    requested = split_names(products)
    names = ingest_exchanges.resolve_exchanges(split_names(exchange) or [])
    options_for = ingest_exchanges.planned_options(
        settings, since_us=since_us, workers=None, chunk_concurrency=None, lock_wait_s=0.0, job=None,
        rate=None,
        products=len(requested) if requested else None)
    request = ingest_exchanges.IngestRequest(names, requested, options_for)

    def show(step: routine.StepResult) -> None:
        if not json_output:
            style = _STYLE[step.status]
            out.print(f"{step.name:<10} [{style}]{step.status:<11}[/] {step.summary} "
                      f"[dim]({step.elapsed_s:.1f} s)[/]", highlight=False)

    with stop_on_signals() as stop:
        while True:
            started = time.monotonic()
            report = routine.run_once(settings, request, check=check, stop=stop, on_step=show)
            if json_output:
                output.print_json(report.to_dict())
            if period is None or stop.stopped:
                break
            if not json_output:
                out.print(f"[dim]next pass in {max(0.0, period - (time.monotonic() - started)):.0f} s[/]")
            if stop.wait(period - (time.monotonic() - started)):
                break
    if report.exit_code:
        raise typer.Exit(report.exit_code)
