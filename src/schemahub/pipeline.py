"""Wiring: settings -> connector, lake storage, locks -> the stages. The CLI calls only this.

Every function here takes explicit settings and returns a typed result; none prints.
The table stages (DuckDB, delta-rs, Arrow) are imported when first used, so `ingest`
and `--help` start without loading them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from schemahub.config import Settings
from schemahub.errors import ConfigError, CorruptState
from schemahub.http.client import ExchangeClient
from schemahub.identifiers import symbol as valid_symbol
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore
from schemahub.infra.locks import LeaseKeeper, LocalLocks, LockBackend, new_owner_id
from schemahub.infra.storage import LocalStorage, Storage, open_storage
from schemahub.ingest import products as product_list
from schemahub.ingest.bans import Ban, active_ban, remember_ban
from schemahub.ingest.engine import IngestOptions, Ingestor
from schemahub.ingest.recovery import Rebuilt, derive_checkpoint, write_checkpoint
from schemahub.ingest.report import IngestReport, Progress
from schemahub.metrics import runs
from schemahub.sources.base import Product, TradeSource
from schemahub.sources.registry import list_exchanges, source_class

if TYPE_CHECKING:
    from schemahub.quality.checks import CheckOptions, CheckResult
    from schemahub.query.engine import QueryEngine
    from schemahub.table.delta import CompactResult, TradesTable
    from schemahub.transform.runner import StageProgress, TransformOptions, TransformReport

log = logging.getLogger("schemahub.pipeline")


TABLE_KEY = "table/trades"


@dataclass(frozen=True)
class Lake:
    storage: Storage
    locks: LockBackend

    def clear_orphans(self) -> None:
        """Remove what writers killed mid-write left behind (local temp files)."""
        if isinstance(self.storage, LocalStorage):
            removed = self.storage.remove_orphaned_temp_files()
            if removed:
                log.info("removed %d temp files left by killed writers", removed)

    @property
    def table(self) -> TradesTable:
        from schemahub.table.delta import TradesTable

        return TradesTable(self.storage.url_for(TABLE_KEY), self.storage.table_options() or None)


def open_lake(settings: Settings) -> Lake:
    """The lake's storage and lock backend; a cloud lake is checked before anything runs."""
    storage = open_storage(settings.lake, settings.env)
    locks_url = settings.env.get("SCHEMAHUB_LOCKS") or ""
    locks: LockBackend
    if locks_url.startswith("dynamodb://"):
        from schemahub.infra.aws import Aws
        from schemahub.infra.dynamo_locks import DynamoLocks, parse_locks_url

        locks = DynamoLocks(parse_locks_url(locks_url), Aws.from_env(settings.env), storage.url_for("state"))
    elif locks_url:
        raise ConfigError(f"SCHEMAHUB_LOCKS={locks_url!r}: expected dynamodb://TABLE (or unset: lease "
                          "files in a local lake)")
    elif isinstance(storage, LocalStorage):
        locks = LocalLocks(Path(storage.root) / "state" / "locks")
    else:
        raise ConfigError(f"SCHEMAHUB_LOCKS is not set: a lake at {settings.lake} is shared between hosts, "
                          "so its leases need a shared lock table (SCHEMAHUB_LOCKS=dynamodb://TABLE)")
    for backend in (storage, locks):
        check = getattr(backend, "check", None)
        if check is not None:
            check()  # a missing bucket/table or refused credentials fail here, naming the setting
    return Lake(storage, locks)


@contextmanager
def open_source(settings: Settings, exchange: str, *, rate: float | None = None, burst: int | None = None,
                unlimited: bool = False, transport: httpx.BaseTransport | None = None
                ) -> Iterator[TradeSource]:
    cls = source_class(exchange)
    config = settings.client_config(cls, rate=rate, burst=burst, unlimited=unlimited)
    endpoint = settings.exchange_endpoint(cls)
    with ExchangeClient(exchange, config, transport=transport) as client:
        yield cls(client, endpoint)


def choose_products(source: TradeSource, lake: Lake, requested: list[str] | None,
                    strict: bool = True) -> list[Product]:
    """``--products`` if given, else the lake's seed file; checked against the exchange's list.

    Asking the exchange first also proves it is reachable before anything is written.
    ``strict=False`` (several exchanges at once) keeps the requested products this
    exchange lists and ignores the others.
    """
    if requested:
        available = source.list_products()
        if strict:
            return product_list.resolve(requested, available, source.name)
        return product_list.pick(requested, available)
    seed = product_list.load_seed(lake.storage, source.name)
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


def ingest(settings: Settings, exchange: str, requested: list[str] | None, options: IngestOptions, *,
           dry_run: bool = False, rate: float | None = None, burst: int | None = None,
           unlimited: bool = False, progress: Progress | None = None) -> IngestReport:
    """Ingest one exchange."""
    return ingest_many(settings, [exchange], requested, lambda _: options, dry_run=dry_run, rate=rate,
                       burst=burst, unlimited=unlimited, progress=progress)[0]


def resolve_exchanges(names: list[str]) -> list[str]:
    """``all`` or a list of registered exchange names (each validated)."""
    if names == ["all"]:
        return list_exchanges()
    for name in names:
        source_class(name)
    return list(dict.fromkeys(names))


def ingest_many(settings: Settings, exchanges: list[str], requested: list[str] | None,
                options_for: Callable[[type[TradeSource]], IngestOptions], *, dry_run: bool = False,
                rate: float | None = None, burst: int | None = None, unlimited: bool = False,
                progress: Progress | None = None) -> list[IngestReport]:
    """Ingest several exchanges at once: each within its own limits, in its own thread.

    Products are resolved on every exchange before anything is written; with several
    exchanges, each takes the requested products it lists, and a product no exchange
    lists is an error.
    """
    lake = open_lake(settings)
    now = datetime.now(UTC)
    # An exchange that banned us in an earlier run is not asked again until the ban ends.
    banned = {name: ban for name in exchanges if (ban := active_ban(lake.storage, name, now)) is not None}
    for ban in banned.values():
        log.error("%s", ban.describe(), extra={"exchange": ban.exchange,
                                               "banned_until": ban.until.isoformat()})
    asked = [name for name in exchanges if name not in banned]
    with ExitStack() as stack:
        sources = [stack.enter_context(open_source(settings, name, rate=rate, burst=burst,
                                                   unlimited=unlimited)) for name in asked]
        if not dry_run:  # however the run ends - even a 418 while listing products
            stack.callback(_remember_bans, lake.storage, sources)
        strict = len(exchanges) == 1
        chosen = [choose_products(source, lake, requested, strict=strict) for source in sources]
        if requested and not strict and not banned:
            found = {name.strip().upper() for products in chosen for p in products
                     for name in (p.symbol, p.native_id.upper())}
            unknown = [name for name in requested if name.strip().upper() not in found]
            if unknown:
                raise ConfigError(f"no selected exchange lists {', '.join(unknown)}")
        ingestors = [Ingestor(source, lake.storage, lake.locks, lock_ttl=settings.lock_ttl, progress=progress)
                     for source in sources]
        for ingestor, products in zip(ingestors, chosen, strict=True):
            ingestor.load_checkpoints(products)  # a refusal on one exchange stops all before any write
        if not dry_run:
            lake.clear_orphans()

        def run(ingestor: Ingestor, products: list[Product]) -> IngestReport:
            options = options_for(type(ingestor.source))
            report = ingestor.plan(products, options) if dry_run else ingestor.run(products, options)
            client = ingestor.source.client
            report.http = {**client.stats.snapshot(), "breaker_trips": client.breaker.trips,
                           "breaker_state": client.breaker.state.value}
            return report

        def not_asked(ban: Ban) -> IngestReport:
            # Banned counts the run as banned, so the ban alarm holds until the ban ends.
            return IngestReport(run_id=new_owner_id(), exchange=ban.exchange, started_at=now,
                                finished_at=now, dry_run=dry_run, error=ban.describe(),
                                http={"banned": 1, "breaker_state": "dead"})

        def run_all() -> list[IngestReport]:
            if len(ingestors) <= 1:
                reports = [run(i, p) for i, p in zip(ingestors, chosen, strict=True)]
            else:
                with ThreadPoolExecutor(len(ingestors), thread_name_prefix="exchange") as pool:
                    reports = list(pool.map(run, ingestors, chosen))
            return reports + [not_asked(ban) for ban in banned.values()]

        if dry_run:
            return run_all()
        with runs.recording(lake.storage, "ingest", settings.emit_metrics) as record:
            reports = run_all()
            runs.add_ingest(record, reports)
            _note_freshness(lake, record)
        return reports


def _remember_bans(storage: Storage, sources: list[TradeSource]) -> None:
    for source in sources:
        ban = source.client.ban
        if ban is not None:
            remember_ban(storage, source.name, ban.banned_for, str(ban))


def _note_freshness(lake: Lake, record: runs.RunRecord) -> None:
    """Products with no new trade this run: their newest trade time from the checkpoint."""
    store = CheckpointStore(lake.storage)
    for product in record.products:
        if product.last_trade_time is None:
            stored = store.load(product.exchange, product.symbol)
            if stored is not None:
                product.last_trade_time = stored.value.last_trade_time


@dataclass(frozen=True)
class SeedResult:
    exchange: str
    products: list[Product]
    written_to: str | None


def update_seed(settings: Settings, exchange: str, pattern: str | None, dry_run: bool) -> SeedResult:
    product_list.compile_filter(pattern)  # a bad regex fails before any request
    lake = open_lake(settings)
    with open_source(settings, exchange) as source:
        chosen = product_list.select_for_seed(source.list_products(), pattern)
        if not chosen:
            raise ConfigError(f"no tradable {exchange} product matches --filter {pattern!r}")
        if dry_run:
            return SeedResult(exchange, chosen, None)
        product_list.save_seed(lake.storage, exchange, chosen, source.client.config.base_url, pattern)
        return SeedResult(exchange, chosen, lake.storage.url_for(product_list.seed_key(exchange)))


@dataclass(frozen=True)
class CheckpointRow:
    key: str
    checkpoint: Checkpoint | None
    error: str | None


def list_checkpoints(settings: Settings) -> list[CheckpointRow]:
    """Every checkpoint in the lake; a corrupt one is listed with its error, not raised."""
    lake = open_lake(settings)
    store = CheckpointStore(lake.storage)
    rows = []
    for key, exchange, sym in store.listed():
        try:
            stored = store.load(exchange, sym)
        except (CorruptState, ConfigError) as exc:
            rows.append(CheckpointRow(key, None, str(exc)))
            continue
        rows.append(CheckpointRow(key, stored.value if stored else None, None))
    return rows


def rebuild_checkpoints(settings: Settings, exchange: str, symbols: list[str]) -> list[Rebuilt]:
    """Re-derive checkpoints from raw files, each under the product's lease."""
    source_class(exchange)
    checked = [valid_symbol(s.strip().upper()) for s in symbols]
    lake = open_lake(settings)
    results = []
    with LeaseKeeper(lake.locks, new_owner_id(), settings.lock_ttl) as keeper:
        for sym in checked:
            lease = keeper.acquire(f"ingest/{exchange}/{sym}")
            try:
                rebuilt = derive_checkpoint(lake.storage, exchange, sym, run_id="checkpoints-rebuild")
                if rebuilt.checkpoint is not None:
                    keeper.check(lease)
                    write_checkpoint(lake.storage, rebuilt.checkpoint.model_copy(
                        update={"lease_token": lease.token}))
                results.append(rebuilt)
            finally:
                keeper.release(lease)
    return results


def transform(settings: Settings, options: TransformOptions,
              progress: StageProgress | None = None) -> TransformReport:
    from schemahub.transform.runner import Transformer

    lake = open_lake(settings)
    transformer = Transformer(lake.storage, lake.table, progress=progress)
    if options.dry_run:
        return transformer.run(options)
    lake.clear_orphans()
    with runs.recording(lake.storage, "transform", settings.emit_metrics) as record:
        report = transformer.run(options)
        runs.add_transform(record, report)
    return report


def compact(settings: Settings, *, target_size: int, zorder: bool, vacuum: bool, retain_hours: int,
            dry_run_vacuum: bool) -> CompactResult:
    from schemahub.table.delta import compact as compact_table

    lake = open_lake(settings)
    delta = lake.table.load()
    if delta is None:
        raise ConfigError("there is no table to compact yet: run `schemahub transform` first")
    with runs.recording(lake.storage, "compact", settings.emit_metrics) as record:
        result = compact_table(delta, target_size=target_size, zorder=zorder, vacuum=vacuum,
                               retain_hours=retain_hours, dry_run_vacuum=dry_run_vacuum)
        runs.add_compact(record, result)
    return result


def query_engine(settings: Settings, *, version: int | None = None,
                 as_of: datetime | None = None, lake: Lake | None = None) -> QueryEngine:
    from schemahub.query.engine import QueryEngine

    lake = lake or open_lake(settings)
    return QueryEngine(lake.table, version=version, as_of=as_of, storage=lake.storage)


def check(settings: Settings, options: CheckOptions) -> list[CheckResult]:
    from schemahub.quality.checks import Checker

    lake = open_lake(settings)
    engine = query_engine(settings, lake=lake)
    try:
        with runs.recording(lake.storage, "check", settings.emit_metrics) as record:
            results = Checker(lake.storage, lake.table, engine).run(options)
            runs.add_check(record, results)
        return results
    finally:
        engine.close()


def dashboard_html(settings: Settings) -> str:
    """The dashboard page for the lake, built now."""
    from schemahub.dashboard import data, render

    lake = open_lake(settings)
    engine = query_engine(settings, lake=lake)
    try:
        board = data.collect(settings.lake, lake.storage, engine)
    finally:
        engine.close()
    return render.page(board)
