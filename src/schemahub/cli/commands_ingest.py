"""Commands of the ingest stage: ingest, update-seed, checkpoints, locks."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Annotated

import typer
from rich.table import Table

from schemahub import pipeline
from schemahub.cli import output
from schemahub.cli.app import (
    ExchangeOption,
    ExchangesOption,
    LakeOption,
    app,
    checkpoints_app,
    context,
    err,
    errors,
    out,
    parse_since,
    split_names,
    terminate_as_interrupt,
)
from schemahub.cli.progress import LogProgress, TerminalProgress
from schemahub.config import Settings
from schemahub.ingest.engine import IngestOptions
from schemahub.ingest.plan import default_concurrency
from schemahub.sources.base import TradeSource


@app.command()
@errors
def ingest(
    exchange: ExchangesOption = "coinbase",
    products: Annotated[str | None, typer.Option(
        "--products", "-p",
        help="Comma-separated products (BTC-USD,ETH-USD). Default: the seed file.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Cold start for products without a checkpoint: ISO time or a duration ago (6h, 2d). "
             "Default 24h.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Products in parallel.")] = None,
    chunk_concurrency: Annotated[int | None, typer.Option(
        min=1, help="Chunks in flight per product (default from Little's law).")] = None,
    rate: Annotated[float | None, typer.Option(
        min=0.01, help="Client requests/s (default: the exchange's documented limit).")] = None,
    burst: Annotated[int | None, typer.Option(min=1, help="Client token-bucket burst.")] = None,
    lock_wait: Annotated[float, typer.Option(
        min=0, help="Seconds to wait for a product another run holds (0: skip it).")] = 0.0,
    job: Annotated[str | None, typer.Option(
        help="Job name: a second run of the same job exits while the first is active.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    lake: LakeOption = None,
) -> None:
    """Fetch new trades into the raw lake and advance each product's watermark."""
    since_us = parse_since(since) if since is not None else None
    exchanges = pipeline.resolve_exchanges(split_names(exchange) or [])
    requested = split_names(products)
    settings = Settings.load(lake)

    def options_for(cls: type[TradeSource]) -> IngestOptions:
        page_rate = rate / cls.page_weight.get(settings.exchange_endpoint(cls), 1) if rate else \
            cls.page_requests_per_second(settings.exchange_endpoint(cls))
        default_workers, default_chunks = default_concurrency(
            page_rate, cls.typical_latency_s, len(requested) if requested else 4)
        return IngestOptions(since_us=since_us, workers=workers or default_workers,
                             chunk_concurrency=chunk_concurrency or default_chunks,
                             lock_wait_s=lock_wait, job=job)

    progress = TerminalProgress(err) if context.interactive and not dry_run else LogProgress()
    with ExitStack() as stack:
        stack.enter_context(progress)
        stack.enter_context(terminate_as_interrupt())
        reports = pipeline.ingest_many(settings, exchanges, requested, options_for, dry_run=dry_run,
                                       rate=rate, burst=burst, progress=progress)
    if json_output:
        if len(reports) == 1:
            output.print_json(reports[0].to_dict())
        else:
            output.print_json({"ok": all(r.ok for r in reports), "reports": [r.to_dict() for r in reports]})
    else:
        for report in reports:
            output.print_ingest(report, out)
    if any(r.interrupted for r in reports):
        raise typer.Exit(130)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@app.command("update-seed")
@errors
def update_seed(
    exchange: ExchangesOption = "coinbase",
    filter: Annotated[str | None, typer.Option(
        "--filter", help="Regular expression the product symbol must contain, e.g. '-USD$'.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the products; write nothing.")] = False,
    lake: LakeOption = None,
) -> None:
    """Fetch the exchange's product list and write the seed file ingest uses by default."""
    settings = Settings.load(lake)
    for name in pipeline.resolve_exchanges(split_names(exchange) or []):
        result = pipeline.update_seed(settings, name, filter, dry_run)
        names = ", ".join(p.symbol for p in result.products)
        if result.written_to is None:
            out.print(f"would write {len(result.products)} {name} products: {names}")
        else:
            out.print(f"wrote {len(result.products)} {name} products to {result.written_to}: {names}")


@app.command()
@errors
def locks(lake: LakeOption = None) -> None:
    """List the leases in the lake (who holds which product, until when)."""
    lake_ = pipeline.open_lake(Settings.load(lake))
    table = Table("lease", "owner", "token", "state")
    now = time.time()
    for record in lake_.locks.list():
        if record.released:
            state = "released"
        elif record.expires_at < now:
            state = "expired"
        else:
            state = f"held ({record.expires_at - now:.0f}s left)"
        table.add_row(record.name, record.owner, str(record.token), state)
    out.print(table)


@checkpoints_app.command("list")
@errors
def checkpoints_list(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    lake: LakeOption = None,
) -> None:
    """Show every product's watermark."""
    rows = pipeline.list_checkpoints(Settings.load(lake))
    if json_output:
        output.print_json([{"key": r.key, "error": r.error,
                            "checkpoint": r.checkpoint.model_dump(mode="json") if r.checkpoint else None}
                           for r in rows])
        return
    table = Table("exchange", "product", "start after id", "last trade id", "last trade (UTC)", "updated")
    for row in rows:
        cp = row.checkpoint
        if cp is None:
            table.add_row(row.key, f"[red]{row.error}[/]", "", "", "", "")
            continue
        table.add_row(cp.exchange, cp.symbol, str(cp.start_after_id), str(cp.last_trade_id),
                      cp.last_trade_time.isoformat() if cp.last_trade_time else "",
                      cp.updated_at.isoformat(timespec="seconds"))
    out.print(table)


@checkpoints_app.command("rebuild")
@errors
def checkpoints_rebuild(
    products: Annotated[str, typer.Option("--products", "-p", help="Comma-separated products.")],
    exchange: ExchangeOption = "coinbase",
    lake: LakeOption = None,
) -> None:
    """Re-derive watermarks from the raw files (recovers a lost or corrupt checkpoint)."""
    names = split_names(products) or []
    for result in pipeline.rebuild_checkpoints(Settings.load(lake), exchange, names):
        cp = result.checkpoint
        if cp is None:
            out.print("no raw files: nothing to rebuild (the next ingest cold-starts)")
            continue
        out.print(f"{cp.exchange} {cp.symbol}: watermark {cp.last_trade_id} (from {result.files} raw files, "
                  f"covering ({cp.start_after_id}, {cp.last_trade_id}])")
        for key in result.unreadable:
            out.print(f"[yellow]unreadable raw file ignored: {key}[/]")
