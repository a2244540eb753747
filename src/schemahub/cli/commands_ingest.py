"""Commands of the ingest stage: update-seed, ingest, repair, checkpoints, quarantine, locks."""

from __future__ import annotations

import enum
import time
from contextlib import ExitStack
from typing import Annotated

import typer

from schemahub import pipeline
from schemahub.cli import output
from schemahub.cli.app import (
    ExchangeOption,
    ExchangesOption,
    JsonOption,
    LakeOption,
    ProductsOption,
    WideOption,
    app,
    checkpoints_app,
    context,
    err,
    errors,
    out,
    parse_since,
    quarantine_app,
    settings_for,
    split_names,
    stop_on_signals,
)
from schemahub.cli.progress import LogProgress, TerminalProgress
from schemahub.ingest import exchanges as ingest_exchanges
from schemahub.ingest.report import exit_code
from schemahub.sources.registry import DEFAULT_EXCHANGE


class SourceChoice(enum.StrEnum):
    AUTO = "auto"
    ARCHIVE = "archive"
    REST = "rest"


@app.command()
@errors
def ingest(
    exchange: ExchangesOption = DEFAULT_EXCHANGE,
    products: ProductsOption = None,
    since: Annotated[str | None, typer.Option(
        help="Where history starts: ISO time or a duration ago (6h, 2d). A new product starts there "
             "(default 24h ago); a product whose history starts later is extended back to it.")] = None,
    source: Annotated[SourceChoice, typer.Option(
        help="auto: bulk archives for whole published days where the exchange has them (Binance, "
             "OKX), REST for the rest; archive: archives only (REST just for their seams); rest: REST "
             "only. Bybit has no REST history: its archive is always used.",
        case_sensitive=False)] = SourceChoice.AUTO,
    workers: Annotated[int | None, typer.Option(min=1, help="Products in parallel.")] = None,
    chunk_concurrency: Annotated[int | None, typer.Option(
        min=1, help="Chunks in flight per product (default from Little's law).")] = None,
    rate: Annotated[float | None, typer.Option(
        min=0.01, help="Trade-page requests per second on every selected exchange (default: the "
                       "exchange's documented limit; Binance converts it to request weight).")] = None,
    burst: Annotated[int | None, typer.Option(
        min=1, help="Token-bucket burst, in trade-page requests.")] = None,
    lock_wait: Annotated[float, typer.Option(
        min=0, help="Seconds to wait for a product another run holds (0: skip it).")] = 0.0,
    job: Annotated[str | None, typer.Option(
        help="Job name: a second run of the same job exits while the first is active.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    json_output: JsonOption = False,
    wide: WideOption = False,
    lake: LakeOption = None,
) -> None:
    """Fetch new trades into the raw lake and advance each product's watermark."""
    since_us = parse_since(since) if since is not None else None
    requested = split_names(products)
    settings = settings_for(lake)
    names = ingest_exchanges.resolve_exchanges(split_names(exchange) or [])
    options_for = ingest_exchanges.planned_options(
        settings, since_us=since_us, workers=workers, chunk_concurrency=chunk_concurrency,
        lock_wait_s=lock_wait, job=job, rate=rate, products=len(requested) if requested else None,
        source=source.value)
    request = ingest_exchanges.IngestRequest(names, requested, options_for, dry_run=dry_run, rate=rate,
                                             burst=burst)
    progress = TerminalProgress(err) if context.interactive and not dry_run else LogProgress()
    with ExitStack() as stack:
        stop = stack.enter_context(stop_on_signals())
        stack.enter_context(progress)
        reports = pipeline.ingest(settings, request, progress=progress, stop=stop)
    if json_output:
        if len(reports) == 1:
            output.print_json(reports[0].to_dict())
        else:
            output.print_json({"ok": all(r.ok for r in reports), "reports": [r.to_dict() for r in reports]})
    else:
        for report in reports:
            output.print_ingest(report, out, err, wide=wide)
    code = exit_code(reports)
    if code:
        raise typer.Exit(code)


@app.command("update-seed")
@errors
def update_seed(
    exchange: ExchangesOption = DEFAULT_EXCHANGE,
    filter: Annotated[str | None, typer.Option(
        "--filter", help="Regular expression the product symbol must contain, e.g. '-USD$'.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the products; write nothing.")] = False,
    lake: LakeOption = None,
) -> None:
    """Fetch the exchange's product list and write the seed file ingest uses by default."""
    settings = settings_for(lake)
    for name in ingest_exchanges.resolve_exchanges(split_names(exchange) or []):
        result = pipeline.update_seed(settings, name, filter, dry_run)
        names = ", ".join(p.symbol for p in result.products)
        count = output.plural(len(result.products), f"{name} product")
        if result.written_to is None:
            out.print(f"would write {count}: {names}")
        else:
            out.print(f"wrote {count} to {result.written_to}: {names}")


@app.command()
@errors
def repair(
    exchange: ExchangesOption = "all",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be fetched; fetch nothing.")]
        = False,
    json_output: JsonOption = False,
    lake: LakeOption = None,
) -> None:
    """Fetch again what is missing for a known reason (released quarantined files); then transform."""
    settings = settings_for(lake)
    names = ingest_exchanges.resolve_exchanges(split_names(exchange) or [])
    with stop_on_signals() as stop:
        report = pipeline.repair(settings, names, dry_run=dry_run, stop=stop)
    if json_output:
        output.print_json(report.to_dict())
    else:
        output.print_repair(report, out, err)
    if report.interrupted:
        raise typer.Exit(130)
    if report.failed:
        raise typer.Exit(1)


@app.command()
@errors
def locks(lake: LakeOption = None) -> None:
    """List the leases in the lake (who holds which product, until when)."""
    backends = pipeline.open_backends(settings_for(lake), create=False)
    rows = []
    now = time.time()
    for record in backends.locks.list():
        if record.released:
            state = "released"
        elif record.expires_at < now:
            state = "expired"
        else:
            state = f"held ({record.expires_at - now:.0f}s left)"
        rows.append((record.name, record.owner, str(record.token), state))
    out.print(output.table(("lease", "owner", "token", "state"), rows))


@checkpoints_app.command("list")
@errors
def checkpoints_list(json_output: JsonOption = False, wide: WideOption = False,
                     lake: LakeOption = None) -> None:
    """Show every product's watermark (a corrupt checkpoint is shown as such)."""
    rows = pipeline.list_checkpoints(settings_for(lake))
    if json_output:
        output.print_json([{"key": r.key, "exchange": r.exchange, "symbol": r.symbol, "error": r.error,
                            "checkpoint": r.checkpoint.model_dump(mode="json") if r.checkpoint else None}
                           for r in rows])
        return
    out.print(output.checkpoints_table(rows, wide=wide))
    for row in rows:
        if row.error:
            err.print(f"[red]{row.exchange} {row.symbol}: {row.error}[/]", highlight=False, soft_wrap=True)


@checkpoints_app.command("rebuild")
@errors
def checkpoints_rebuild(
    products: Annotated[str, typer.Option("--products", "-p", help="Comma-separated products.")],
    exchange: ExchangeOption = DEFAULT_EXCHANGE,
    lake: LakeOption = None,
) -> None:
    """Re-derive watermarks from the raw files (recovers a lost or corrupt checkpoint)."""
    names = split_names(products) or []
    for result in pipeline.rebuild_checkpoints(settings_for(lake), exchange, names):
        cp = result.checkpoint
        if cp is None:
            out.print("no raw files: nothing to rebuild (the next ingest cold-starts)")
            continue
        files = output.plural(result.files, "raw file")
        out.print(f"{cp.exchange} {cp.symbol}: watermark {cp.last_trade_id} (from {files}, covering "
                  f"({cp.start_after_id}, {cp.last_trade_id}])")
        for key in result.unreadable:
            out.print(f"[yellow]unreadable raw file ignored: {key}[/]")


@quarantine_app.command("list")
@errors
def quarantine_list(json_output: JsonOption = False, wide: WideOption = False,
                    lake: LakeOption = None) -> None:
    """Raw files the transform could not use, and why."""
    records = pipeline.quarantined(settings_for(lake))
    if json_output:
        output.print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        out.print("no quarantined raw files")
        return
    out.print(output.quarantine_table(records, wide=wide))


@quarantine_app.command("release")
@errors
def quarantine_release(
    files: Annotated[list[str] | None, typer.Argument(
        metavar="FILE", help="Raw file keys as `quarantine list` shows them.")] = None,
    all_files: Annotated[bool, typer.Option("--all", help="Release every quarantined file.")] = False,
    lake: LakeOption = None,
) -> None:
    """Set quarantined files aside and ask `schemahub repair` to fetch their trades again."""
    if bool(files) == all_files:
        from schemahub.errors import ConfigError

        raise ConfigError("name the files to release, or pass --all")
    for item in pipeline.release_quarantined(settings_for(lake), None if all_files else files):
        kept = f"; its bytes are kept at {item.kept_at}" if item.kept_at else ""
        out.print(f"released {item.key}: {item.exchange} {item.symbol} ids {item.first_id}..{item.last_id} "
                  f"will be fetched again by `schemahub repair`{kept}")
