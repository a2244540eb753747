"""Ingest several exchanges at once: resolve -> open -> run, each exchange on its own.

Every exchange runs in its own thread, within its own limits, to its own end: one that is
unreachable, banned, misconfigured or whose lake state is corrupt fails alone - its report
says which products and why - and never stops or delays the others.

1. **resolve**: which exchanges (``all`` or names); those that banned us in an earlier run
   are not asked until the ban ends (state/bans);
2. **open**: each exchange's connector, and its products: ``--products`` (symbols or native
   ids) or the lake's seed file, checked against the exchange's own list;
3. **run**: each exchange's ``Ingestor`` (or its plan, for a dry run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemahub.errors import ConfigError, Interrupted, SchemahubError
from schemahub.infra.lake import Backends
from schemahub.infra.storage import Storage
from schemahub.ingest import products as product_list
from schemahub.ingest.bans import Ban, active_ban, remember_ban
from schemahub.ingest.connect import open_archive, open_source
from schemahub.ingest.engine import Ingestor
from schemahub.ingest.report import IngestReport, ProductReport, Progress, Status
from schemahub.ingest.run import IngestOptions, SourceMode
from schemahub.settings import Settings
from schemahub.sources.archive import ArchiveSource
from schemahub.sources.base import Product, TradeSource
from schemahub.sources.registry import list_exchanges, source_class
from schemahub.stop import StopToken
from schemahub.timeutil import new_run_id

log = logging.getLogger("schemahub.ingest")

OptionsFor = Callable[[type[TradeSource]], IngestOptions]


def resolve_exchanges(names: list[str]) -> list[str]:
    """``all`` or a list of registered exchange names (each validated)."""
    if names == ["all"]:
        return list_exchanges()
    for name in names:
        source_class(name)
    return list(dict.fromkeys(names))


@dataclass
class _Exchange:
    """One exchange through the three steps; ``report`` is set once it failed or ran."""

    name: str
    source: TradeSource | None = None
    archive: ArchiveSource | None = None
    products: list[Product] = field(default_factory=list)
    report: IngestReport | None = None


@dataclass(frozen=True)
class IngestRequest:
    exchanges: list[str]
    requested: list[str] | None
    """``--products``: symbols or native ids; None for each exchange's seed file."""
    options_for: OptionsFor
    dry_run: bool = False
    rate: float | None = None
    """Trade-page requests per second (every venue; weight-budgeted ones convert it)."""
    burst: int | None = None
    unlimited: bool = False


def run(settings: Settings, lake: Backends, request: IngestRequest, *, progress: Progress | None = None,
        stop: StopToken | None = None) -> list[IngestReport]:
    stop = stop or StopToken()
    now = datetime.now(UTC)
    exchanges = [_Exchange(name) for name in request.exchanges]
    with ExitStack() as stack:
        _in_parallel(exchanges, lambda ex: _open(settings, lake, request, ex, stack, stop, now))
        _check_requested(request, exchanges)
        if not request.dry_run:
            lake.clear_orphans()
        _in_parallel(exchanges, lambda ex: _run(settings, lake, request, ex, progress, stop))
        if not request.dry_run:
            _remember_bans(lake.storage, exchanges)
    reports = [ex.report for ex in exchanges]
    assert all(r is not None for r in reports)
    return [r for r in reports if r is not None]


def _in_parallel(exchanges: list[_Exchange], step: Callable[[_Exchange], None]) -> None:
    if len(exchanges) == 1:
        step(exchanges[0])
        return
    with ThreadPoolExecutor(len(exchanges), thread_name_prefix="exchange") as pool:
        list(pool.map(step, exchanges))


def _open(settings: Settings, lake: Backends, request: IngestRequest, ex: _Exchange, stack: ExitStack,
          stop: StopToken, now: datetime) -> None:
    """The connector and the products, or a failed report saying why not."""
    try:
        ban = active_ban(lake.storage, ex.name, now)
        if ban is not None:
            ex.report = _not_asked(ex.name, ban, request, now)
            return
        ex.source = stack.enter_context(open_source(settings, ex.name, rate=request.rate, burst=request.burst,
                                                    unlimited=request.unlimited, stop=stop))
        ex.archive = stack.enter_context(open_archive(settings, ex.name, stop=stop))
        if ex.archive is None and request.options_for(type(ex.source)).source == "archive":
            raise ConfigError(f"{ex.name} publishes no bulk archive: use --source rest (or auto)")
        ex.products = _choose(ex.source, lake.storage, request.requested, strict=len(request.exchanges) == 1)
    except SchemahubError as exc:
        if isinstance(exc, ConfigError) and len(request.exchanges) == 1:
            raise  # one exchange asked for, and the request itself is wrong: bad input, exit 2
        ex.report = _failed_exchange(ex.name, exc, lake.storage, request, now)
        if ex.source is not None:
            _add_http(ex.report, ex.source)


def _choose(source: TradeSource, storage: Storage, requested: list[str] | None,
            strict: bool) -> list[Product]:
    """``--products`` if given, else the lake's seed file; checked against the exchange's list.

    ``strict=False`` (several exchanges at once) keeps the requested products this exchange
    lists and ignores the others.
    """
    if requested:
        available = source.list_products()
        if strict:
            return product_list.resolve(requested, available, source.name)
        return product_list.pick(requested, available)
    seed = product_list.load_seed(storage, source.name)
    if seed is None or not seed.products:
        raise ConfigError(f"no products to ingest: pass --products, or run "
                          f"`schemahub update-seed --exchange {source.name}` first")
    listed: dict[str, Product] = {p.symbol: p for p in source.list_products()}
    chosen = []
    for item in seed.products:
        if item.symbol in listed:
            chosen.append(listed[item.symbol])
        else:
            log.warning("%s no longer lists %s (in the seed file); skipping it - run update-seed",
                        source.name, item.symbol)
    return chosen


def _check_requested(request: IngestRequest, exchanges: list[_Exchange]) -> None:
    """With several exchanges, a requested product none of the *answering* ones lists is an error."""
    if not request.requested or len(request.exchanges) == 1:
        return
    if any(ex.report is not None for ex in exchanges):
        return  # an exchange that did not answer may list it: say nothing we cannot know
    found = {name.strip().upper() for ex in exchanges for p in ex.products
             for name in (p.symbol, p.native_id.upper())}
    unknown = [name for name in request.requested if name.strip().upper() not in found]
    if unknown:
        raise ConfigError(f"no selected exchange lists {', '.join(unknown)}")


def _run(settings: Settings, lake: Backends, request: IngestRequest, ex: _Exchange,
         progress: Progress | None, stop: StopToken) -> None:
    if ex.report is not None or ex.source is None:
        return
    source = ex.source
    options = request.options_for(type(source))
    ingestor = Ingestor(source, lake.storage, lake.locks, lock_ttl=settings.locks.ttl, progress=progress,
                        stop=stop, archive=ex.archive)
    try:
        work = ingestor.plan if request.dry_run else ingestor.run
        ex.report = work(ex.products, options)
    except Interrupted:
        stopped = [ProductReport(ex.name, p.symbol, Status.INTERRUPTED) for p in ex.products]
        ex.report = IngestReport(ingestor.run_id, ex.name, datetime.now(UTC), dry_run=request.dry_run,
                                 interrupted=True, products=stopped)
    except SchemahubError as exc:
        ex.report = _failed_exchange(ex.name, exc, lake.storage, request, datetime.now(UTC), ex.products)
    _add_http(ex.report, source)


def _add_http(report: IngestReport, source: TradeSource) -> None:
    client = source.client
    report.http = client.stats.snapshot()
    report.breaker_trips = client.breaker.trips
    report.breaker_state = client.breaker.state.value


def _failed_exchange(name: str, exc: SchemahubError, storage: Storage, request: IngestRequest,
                     now: datetime, products: list[Product] | None = None) -> IngestReport:
    """An exchange that could not run: every product it would have taken fails with the cause."""
    config = isinstance(exc, ConfigError)
    interrupted = isinstance(exc, Interrupted)
    report = IngestReport(new_run_id(now), name, now, finished_at=datetime.now(UTC), dry_run=request.dry_run,
                          interrupted=interrupted, error=None if interrupted else str(exc),
                          config_error=config, error_exit=exc.exit_code)
    for symbol in _expected_symbols(name, storage, request, products):
        item = ProductReport(name, symbol)
        if interrupted:
            item.status = Status.INTERRUPTED
        else:
            item.fail(str(exc), config=config)
        report.products.append(item)
    return report


def _expected_symbols(name: str, storage: Storage, request: IngestRequest,
                      products: list[Product] | None) -> list[str]:
    """The products a run of this exchange would have covered, as far as we know them."""
    if products:
        return [p.symbol for p in products]
    if request.requested and len(request.exchanges) == 1:
        return [s.strip().upper() for s in request.requested]
    try:
        seed = product_list.load_seed(storage, name)
    except SchemahubError:
        return []
    return [] if seed is None else [p.symbol for p in seed.products]


def _not_asked(name: str, ban: Ban, request: IngestRequest, now: datetime) -> IngestReport:
    # Banned counts the run as banned, so the ban alarm holds until the ban ends.
    report = IngestReport(run_id=new_run_id(now), exchange=name, started_at=now, finished_at=now,
                          dry_run=request.dry_run, error=ban.describe(), breaker_state="dead")
    report.http.banned = 1
    return report


def _remember_bans(storage: Storage, exchanges: list[_Exchange]) -> None:
    """However the run ended - even a 418 while listing products - a ban is remembered."""
    for ex in exchanges:
        ban = ex.source.client.ban if ex.source is not None else None
        if ban is not None:
            remember_ban(storage, ex.name, ban.banned_for, str(ban))


def planned_options(settings: Settings, *, since_us: int | None, workers: int | None,
                    chunk_concurrency: int | None, lock_wait_s: float, job: str | None, rate: float | None,
                    products: int | None, source: SourceMode = "auto") -> OptionsFor:
    """Each venue's options: what the user set, else concurrency sized by Little's law for the
    venue's own page rate (``products``: how many were asked for, if known)."""
    from schemahub.ingest.connect import endpoint
    from schemahub.ingest.plan import default_concurrency

    def options_for(cls: type[TradeSource]) -> IngestOptions:
        page_rate = rate or cls.page_requests_per_second(endpoint(settings, cls))
        default_workers, default_chunks = default_concurrency(page_rate, cls.typical_latency_s, products or 4)
        return IngestOptions(since_us=since_us, workers=workers or default_workers,
                             chunk_concurrency=chunk_concurrency or default_chunks, lock_wait_s=lock_wait_s,
                             job=job, source=source,
                             file_trades=settings.raw_files.trades_for(settings.lake),
                             file_age_s=settings.raw_files.max_age_s)

    return options_for
