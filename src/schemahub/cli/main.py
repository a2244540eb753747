"""The ``schemahub`` command line: a thin layer over ``schemahub.pipeline``.

Errors are translated to messages and exit codes in one place (``_errors``):
0 success, 1 a run failed (details printed), 2 bad input or configuration,
3 another run of the same job holds its lock, 130 interrupted.
"""

from __future__ import annotations

import functools
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from schemahub import __version__, pipeline
from schemahub.cli import logs, output
from schemahub.cli.progress import LogProgress, TerminalProgress
from schemahub.config import Settings
from schemahub.errors import ConfigError, SchemahubError
from schemahub.ingest.engine import IngestOptions
from schemahub.ingest.plan import default_concurrency
from schemahub.sources.registry import list_exchanges, source_class

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="schemahub", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Exactly-once crypto trade data: exchange REST APIs -> immutable raw lake -> one table.",
)
checkpoints_app = typer.Typer(no_args_is_help=True, help="Inspect or repair per-product watermarks.")
app.add_typer(checkpoints_app, name="checkpoints")

err = Console(stderr=True)
# Piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 200)

LakeOption = Annotated[str | None, typer.Option(
    "--lake", envvar="SCHEMAHUB_LAKE", show_envvar=True,
    help="Lake location: a local directory (default ./lake).")]
ExchangeOption = Annotated[str, typer.Option("--exchange", "-e", help="Exchange name, e.g. coinbase.")]


class _Context:
    interactive = False


_ctx = _Context()


def _errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate SchemahubError into one clear line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SchemahubError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def _main(
    log_format: Annotated[logs.LogFormat, typer.Option(
        "--log-format", help="auto: rich on a terminal, JSON lines otherwise.")] = "auto",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _ctx.interactive = logs.setup(log_format, verbose, err)


def parse_since(text: str, now: datetime | None = None) -> int:
    """``--since``: an ISO-8601 date/time (UTC unless it says otherwise) or a duration ago (6h, 2d)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        moment = now - timedelta(**{unit: int(match[1])})
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(f"--since {text!r} is neither an ISO-8601 time (2026-11-26T12:00:00Z) "
                              "nor a duration (90m, 6h, 2d)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise ConfigError(f"--since {text!r} is in the future")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _split(products: str | None) -> list[str] | None:
    if products is None:
        return None
    names = [p.strip() for p in products.split(",") if p.strip()]
    if not names:
        raise ConfigError("--products is empty")
    return names


@app.command()
@_errors
def ingest(
    exchange: ExchangeOption = "coinbase",
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
    cls = source_class(exchange)
    requested = _split(products)
    settings = Settings.load(lake)
    default_workers, default_chunks = default_concurrency(
        rate or cls.rate_limit.rate, cls.typical_latency_s, len(requested) if requested else 4)
    options = IngestOptions(since_us=since_us, workers=workers or default_workers,
                            chunk_concurrency=chunk_concurrency or default_chunks,
                            lock_wait_s=lock_wait, job=job)
    progress = TerminalProgress(err) if _ctx.interactive and not dry_run else LogProgress()
    with ExitStack() as stack:
        stack.enter_context(progress)
        stack.enter_context(_terminate_as_interrupt())
        report = pipeline.ingest(settings, exchange, requested, options, dry_run=dry_run, rate=rate,
                                 burst=burst, progress=progress)
    if json_output:
        output.print_json(report.to_dict())
    else:
        output.print_ingest(report, out)
    if report.interrupted:
        raise typer.Exit(130)
    if not report.ok:
        raise typer.Exit(1)


@app.command("update-seed")
@_errors
def update_seed(
    exchange: ExchangeOption = "coinbase",
    filter: Annotated[str | None, typer.Option(
        "--filter", help="Regular expression the product symbol must contain, e.g. '-USD$'.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the products; write nothing.")] = False,
    lake: LakeOption = None,
) -> None:
    """Fetch the exchange's product list and write the seed file ingest uses by default."""
    result = pipeline.update_seed(Settings.load(lake), exchange, filter, dry_run)
    names = ", ".join(p.symbol for p in result.products)
    if result.written_to is None:
        out.print(f"would write {len(result.products)} {exchange} products: {names}")
    else:
        out.print(f"wrote {len(result.products)} {exchange} products to {result.written_to}: {names}")


@app.command()
@_errors
def simulate(
    exchange: ExchangeOption = "coinbase",
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8700,
    seed: Annotated[int, typer.Option(help="Seed of the trade streams and the fault dice.")] = 42,
    latency: Annotated[float, typer.Option(min=0, help="Added latency per request, seconds.")] = 0.0,
    jitter: Annotated[float, typer.Option(min=0, help="Latency jitter (+/- seconds).")] = 0.0,
    error_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of 5xx answers.")] = 0.0,
    hang_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of requests never answered.")] = 0.0,
    truncate_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of truncated bodies.")] = 0.0,
    reset_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of connection resets.")] = 0.0,
    rate_limit: Annotated[bool, typer.Option(help="Enforce the per-IP token bucket.")] = True,
    rate: Annotated[float, typer.Option(min=0.01, help="Server-side requests/s per IP.")] = 10.0,
    burst: Annotated[int, typer.Option(min=1, help="Server-side burst per IP.")] = 15,
    history_scale: Annotated[float, typer.Option(
        min=0.001, help="Multiply every product's history (trades existing at start).")] = 1.0,
) -> None:
    """Serve a simulated exchange over HTTP until interrupted (prints its URL first)."""
    from dataclasses import replace

    from schemahub.simulator.server import DEFAULT_PRODUCTS, EXCHANGES, Faults, Simulator

    if exchange not in EXCHANGES:
        raise ConfigError(f"no simulator for {exchange!r}; available: {', '.join(EXCHANGES)}")
    faults = Faults(latency_s=latency, latency_jitter_s=jitter, error_rate=error_rate, hang_rate=hang_rate,
                    truncate_rate=truncate_rate, reset_rate=reset_rate, rate_limit=rate_limit, rate=rate,
                    burst=burst)
    specs = [replace(p, history=max(1, int(p.history * history_scale))) for p in DEFAULT_PRODUCTS]
    try:
        sim = Simulator(exchange, specs, seed=seed, host=host, port=port, faults=faults)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with sim:
        sys.stdout.write(f"simulator listening on {sim.url}\n")
        sys.stdout.flush()
        stop.wait()


@app.command()
@_errors
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
@_errors
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
@_errors
def checkpoints_rebuild(
    products: Annotated[str, typer.Option("--products", "-p", help="Comma-separated products.")],
    exchange: ExchangeOption = "coinbase",
    lake: LakeOption = None,
) -> None:
    """Re-derive watermarks from the raw files (recovers a lost or corrupt checkpoint)."""
    names = _split(products) or []
    for result in pipeline.rebuild_checkpoints(Settings.load(lake), exchange, names):
        cp = result.checkpoint
        if cp is None:
            out.print("no raw files: nothing to rebuild (the next ingest cold-starts)")
            continue
        out.print(f"{cp.exchange} {cp.symbol}: watermark {cp.last_trade_id} (from {result.files} raw files, "
                  f"covering ({cp.start_after_id}, {cp.last_trade_id}])")
        for key in result.unreadable:
            out.print(f"[yellow]unreadable raw file ignored: {key}[/]")


@app.command()
def version() -> None:
    """Print the version and the registered exchanges."""
    out.print(f"schemahub {__version__} (exchanges: {', '.join(list_exchanges())})")


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (docker stop, ECS) gets the same graceful stop as Ctrl-C."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    app()
