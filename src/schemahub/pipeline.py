"""Wiring: settings -> lake backends, connectors -> the stages. The CLI (and the Python API)
call only this.

Every function here takes explicit settings and returns a typed result; none prints or
exits. The table stages (DuckDB, delta-rs, Arrow) are imported when first used, so
``ingest`` and ``--help`` start without loading them. Each run of a stage is recorded in
the lake's run history (metrics/runs.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemahub.errors import ConfigError, CorruptState, LockHeld
from schemahub.identifiers import symbol as valid_symbol
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore
from schemahub.infra.lake import Backends, connect_lake
from schemahub.infra.locks import Lease, LeaseKeeper, new_owner_id
from schemahub.infra.storage import LocalStorage, Storage, storage_error
from schemahub.ingest import exchanges
from schemahub.ingest import products as product_list
from schemahub.ingest.connect import VenueAggregates, open_source
from schemahub.ingest.recovery import Rebuilt, derive_checkpoint, write_checkpoint
from schemahub.ingest.report import IngestReport, Progress, record_ingest
from schemahub.metrics import runs
from schemahub.settings import Settings
from schemahub.sources.base import Product
from schemahub.sources.registry import source_class
from schemahub.stop import StopToken

if TYPE_CHECKING:
    from schemahub.ingest.repair import Disagreement, Released, RepairItem
    from schemahub.quality.certificates import CertifyReport
    from schemahub.quality.checks import CheckResult
    from schemahub.quality.options import CheckOptions
    from schemahub.query.engine import QueryEngine
    from schemahub.query.export import ExportReport, ExportRequest
    from schemahub.table.delta import CompactResult, TradesTable
    from schemahub.transform.claims import Claims
    from schemahub.transform.report import StageProgress, TransformOptions, TransformReport
    from schemahub.transform.state import Quarantined

log = logging.getLogger("schemahub.pipeline")

MAINTENANCE_LEASE = "table/trades"
"""Held by every rewrite of the table (compact, z-order, vacuum, rebuild): they never overlap."""
COMPACT_ATTEMPTS = 5


def open_backends(settings: Settings, *, create: bool = True) -> Backends:
    """The lake's storage and lease backend; ``create=False`` for read-only commands."""
    return connect_lake(settings.lake, settings.locks.url, settings.aws, create=create)


def trades_table(backends: Backends) -> TradesTable:
    from schemahub.table.delta import TradesTable

    return TradesTable.of(backends.storage)


def _emit(settings: Settings) -> str | None:
    return settings.metrics.namespace if settings.metrics.cloudwatch else None


# -- ingest ------------------------------------------------------------------------------------


def ingest(settings: Settings, request: exchanges.IngestRequest, *, progress: Progress | None = None,
           stop: StopToken | None = None) -> list[IngestReport]:
    """Ingest one or several exchanges, each isolated from the others (ingest/exchanges.py)."""
    backends = open_backends(settings)
    if request.dry_run:
        return exchanges.run(settings, backends, request, progress=progress, stop=stop)
    with runs.recording(backends.storage, "ingest", _emit(settings)) as record:
        reports = exchanges.run(settings, backends, request, progress=progress, stop=stop)
        record_ingest(record, reports)
        _note_freshness(backends, record)
    return reports


def _note_freshness(backends: Backends, record: runs.RunRecord) -> None:
    """Products with no new trade this run: their newest trade time from the checkpoint."""
    store = CheckpointStore(backends.storage)
    for product in record.products:
        if product.last_trade_time is None:
            try:
                stored = store.load(product.exchange, product.symbol)
            except (CorruptState, ConfigError):
                continue  # the product's own report says why
            if stored is not None:
                product.last_trade_time = stored.value.last_trade_time


@dataclass(frozen=True)
class SeedResult:
    exchange: str
    products: list[Product]
    written_to: str | None


def update_seed(settings: Settings, exchange: str, pattern: str | None, dry_run: bool) -> SeedResult:
    product_list.compile_filter(pattern)  # a bad regex fails before any request
    with open_source(settings, exchange) as source:
        chosen = product_list.select_for_seed(source.list_products(), pattern)
        if not chosen:
            raise ConfigError(f"no tradable {exchange} product matches --filter {pattern!r}")
        if dry_run:  # the lake is not even opened
            return SeedResult(exchange, chosen, None)
        backends = open_backends(settings)
        product_list.save_seed(backends.storage, exchange, chosen, source.client.config.base_url, pattern)
        return SeedResult(exchange, chosen, backends.storage.url_for(product_list.seed_key(exchange)))


# -- repair ------------------------------------------------------------------------------------


@dataclass
class RepairReport:
    dry_run: bool
    items: list[RepairItem]
    """What was to be fetched (or, in a dry run, would be), with why."""
    reports: list[IngestReport]
    transform: TransformReport | None = None
    """The transform that put the repaired trades in the table (None: nothing was fetched)."""

    @property
    def failed(self) -> bool:
        failed_transform = self.transform is not None and self.transform.needs_attention
        return failed_transform or any(not r.ok and not r.interrupted for r in self.reports)

    @property
    def interrupted(self) -> bool:
        return any(r.interrupted for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "items": [i.to_dict() for i in self.items],
                "reports": [r.to_dict() for r in self.reports],
                "transform": None if self.transform is None else self.transform.to_dict()}


def repair(settings: Settings, names: list[str], *, dry_run: bool = False, stop: StopToken | None = None,
           now: datetime | None = None) -> RepairReport:
    """Fetch again what is missing for a reason we can act on (ingest/repair.py ``plan``), then
    transform it: quarantined files, unexplained id gaps, exchange gaps due to be asked once
    more, days whose cross-check disagrees."""
    from schemahub.ingest.engine import Ingestor
    from schemahub.ingest.repair import pending, plan, release, request
    from schemahub.transform.report import TransformOptions

    stop = stop or StopToken()
    now = now or datetime.now(UTC)
    backends = open_backends(settings, create=False)
    unexplained, disagreements = _repair_evidence(settings, backends, set(names))
    items = plan(backends.storage, set(names), now=now, gap_wait_s=settings.repair_gap_wait_s,
                 unexplained=unexplained, disagreements=disagreements)
    report = RepairReport(dry_run, items, [])
    if dry_run or not any(i.fetches for i in items):
        return report
    with runs.recording(backends.storage, "repair", _emit(settings)) as record:
        quarantined = [i.key for i in items if i.key is not None]
        if quarantined:
            release(backends.storage, quarantined)
        request(backends.storage, items, now)
        wanted = {key for key, ranges in pending(backends.storage).items()
                  if key[0] in names and any(r.fetched_at is None for r in ranges)}
        for exchange in sorted({e for e, _ in wanted}):
            symbols = {s for e, s in wanted if e == exchange}
            with open_source(settings, exchange, stop=stop) as source:
                products = [p for p in source.list_products() if p.symbol in symbols]
                ingestor = Ingestor(source, backends.storage, backends.locks, lock_ttl=settings.locks.ttl,
                                    stop=stop)
                result = ingestor.repair(products)
                result.http = source.client.stats.snapshot()
                report.reports.append(result)
        record_ingest(record, report.reports)
        record.details["repaired"] = [i.to_dict() for i in items]
    if not stop.stopped and any(p.trades for r in report.reports for p in r.products):
        report.transform = transform(settings, TransformOptions(), stop=stop)
    return report


def _repair_evidence(settings: Settings, backends: Backends, names: set[str]) -> tuple[
        dict[tuple[str, str], list[tuple[int, int]]], list[Disagreement]]:
    """From the table: unexplained id gaps; from the certificates: days whose cross-check disagrees."""
    import json

    from schemahub.ingest.repair import Disagreement
    from schemahub.quality.certificates import Certificates
    from schemahub.quality.checks import Checker

    engine = query_engine(settings, backends=backends)
    try:
        unexplained = Checker(backends.storage, trades_table(backends), engine).unexplained_gaps()
    finally:
        engine.close()
    disagreements = []
    for row in Certificates(backends.storage).rows():
        cross = json.loads(row["cross_check"])
        if row["exchange"] in names and cross.get("result") == "disagrees":
            first, last = row["first_trade_id"], row["last_trade_id"]
            numbered = first.isdigit() and last.isdigit()
            summary = f"{cross['source']} disagree on {cross['differences']} figure(s)"
            disagreements.append(Disagreement(row["exchange"], row["symbol"], row["day"],
                                              int(first) if numbered else None,
                                              int(last) if numbered else None, summary))
    return unexplained, disagreements


def quarantined(settings: Settings) -> list[Quarantined]:
    from schemahub.transform.state import all_quarantined

    return all_quarantined(open_backends(settings, create=False).storage)


def release_quarantined(settings: Settings, keys: list[str] | None) -> list[Released]:
    from schemahub.ingest.repair import release

    return release(open_backends(settings, create=False).storage, keys)


# -- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointRow:
    key: str
    exchange: str
    symbol: str
    checkpoint: Checkpoint | None
    error: str | None


def list_checkpoints(settings: Settings) -> list[CheckpointRow]:
    """Every checkpoint in the lake; a corrupt one is listed with its error, not raised."""
    store = CheckpointStore(open_backends(settings, create=False).storage)
    rows = []
    for key, exchange, sym in store.listed():
        try:
            stored = store.load(exchange, sym)
        except (CorruptState, ConfigError) as exc:
            rows.append(CheckpointRow(key, exchange, sym, None, str(exc)))
            continue
        rows.append(CheckpointRow(key, exchange, sym, stored.value if stored else None, None))
    return rows


def rebuild_checkpoints(settings: Settings, exchange: str, symbols: list[str]) -> list[Rebuilt]:
    """Re-derive checkpoints from raw files, each under the product's lease."""
    source = source_class(exchange)
    checked = [valid_symbol(s.strip().upper()) for s in symbols]
    backends = open_backends(settings, create=False)
    results = []
    with LeaseKeeper(backends.locks, new_owner_id(), settings.locks.ttl) as keeper:
        for sym in checked:
            lease = keeper.acquire(f"ingest/{exchange}/{sym}")
            try:
                rebuilt = derive_checkpoint(backends.storage, exchange, sym, run_id="checkpoints-rebuild",
                                            source=source)
                if rebuilt.checkpoint is not None:
                    keeper.check(lease)
                    write_checkpoint(backends.storage, rebuilt.checkpoint.model_copy(
                        update={"lease_token": lease.token}))
                results.append(rebuilt)
            finally:
                keeper.release(lease)
    return results


# -- the table ---------------------------------------------------------------------------------


def _maintenance_lease(keeper: LeaseKeeper, wait_s: float, stop: StopToken, what: str) -> Lease:
    """The table's maintenance lease: a rewrite waits up to ``wait_s`` for another to end."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return keeper.acquire(MAINTENANCE_LEASE)
        except LockHeld as exc:
            if time.monotonic() >= deadline:
                raise LockHeld(f"cannot {what}: another rewrite of the table (compact, vacuum or rebuild) "
                               f"is running - {exc}; try again when it ends, or pass --lock-wait",
                               name=exc.name, owner=exc.owner) from None
        stop.wait(min(1.0, max(0.05, deadline - time.monotonic())))
        stop.check()


def transform(settings: Settings, options: TransformOptions, progress: StageProgress | None = None,
              stop: StopToken | None = None, lock_wait_s: float = 0.0,
              round_ids: int | None = None) -> TransformReport:
    """Transform what ingest committed; ``round_ids`` caps the trade ids of one commit (see
    ``transform.claims``: several processes share a big backfill by product)."""
    from schemahub.transform.runner import Transformer

    stop = stop or StopToken()
    backends = open_backends(settings, create=not options.dry_run)
    if options.dry_run:
        planner = Transformer(backends.storage, trades_table(backends), progress=progress, stop=stop)
        return planner.run(options)
    backends.clear_orphans()
    if options.retry_quarantined:
        _release_vanished(backends)
    with LeaseKeeper(backends.locks, new_owner_id(), settings.locks.ttl) as keeper, \
            runs.recording(backends.storage, "transform", _emit(settings)) as record:
        if options.rebuild:  # a rebuild replaces every file: it must not overlap a compaction
            _maintenance_lease(keeper, lock_wait_s, stop, "rebuild")
        claims = None if options.rebuild else _product_claims(keeper, round_ids)
        transformer = Transformer(backends.storage, trades_table(backends), progress=progress, stop=stop,
                                  claims=claims)
        report = transformer.run(options)
        report.record_into(record)
    return report


def _product_claims(keeper: LeaseKeeper, round_ids: int | None) -> Claims:
    """Transform leases per product, so processes on several hosts share a backfill."""
    leases: dict[tuple[str, str], Lease] = {}

    def take(exchange: str, symbol: str) -> bool:
        try:
            leases[(exchange, symbol)] = keeper.acquire(f"transform/{exchange}/{symbol}")
        except LockHeld:
            return False
        return True

    def give_back(exchange: str, symbol: str) -> None:
        lease = leases.pop((exchange, symbol), None)
        if lease is not None:
            keeper.release(lease)

    from schemahub.transform.claims import Claims

    return Claims(take, give_back) if round_ids is None else Claims(take, give_back, round_ids=round_ids)


def _release_vanished(backends: Backends) -> None:
    """Quarantined files deleted by hand cannot be retried: ask for their ranges again instead."""
    from schemahub.ingest.repair import release
    from schemahub.transform.state import all_quarantined

    gone = [q.key for q in all_quarantined(backends.storage) if backends.storage.read(q.key) is None]
    for item in release(backends.storage, gone) if gone else []:
        log.warning("%s is gone: ids %d..%d will be fetched again by `schemahub repair`", item.key,
                    item.first_id, item.last_id)


def compact(settings: Settings, *, target_size: int, zorder: bool, vacuum: bool, retain_hours: int,
            dry_run_vacuum: bool, lock_wait_s: float = 0.0, stop: StopToken | None = None) -> CompactResult:
    """Compact (and vacuum) under the table's maintenance lease, re-planned after a commit race."""
    from schemahub.table.delta import check_retention, replanned
    from schemahub.table.delta import compact as compact_table

    check_retention(retain_hours)
    stop = stop or StopToken()
    backends = open_backends(settings, create=False)
    table = trades_table(backends)
    if table.load() is None:
        raise ConfigError("there is no table to compact yet: run `schemahub transform` first")
    with LeaseKeeper(backends.locks, new_owner_id(), settings.locks.ttl) as keeper, \
            runs.recording(backends.storage, "compact", _emit(settings)) as record:
        _maintenance_lease(keeper, lock_wait_s, stop, "compact")

        def attempt(_: int) -> CompactResult:
            delta = table.load()
            assert delta is not None
            return compact_table(delta, target_size=target_size, zorder=zorder, vacuum=vacuum,
                                 retain_hours=retain_hours, dry_run_vacuum=dry_run_vacuum)

        result = replanned(attempt, COMPACT_ATTEMPTS, "compaction")
        record.details.update(version_before=result.version_before, version_after=result.version_after,
                              files_removed=result.files_removed, files_added=result.files_added,
                              vacuumed=len(result.vacuumed))
    return result


def query_engine(settings: Settings, *, version: int | None = None, as_of: datetime | None = None,
                 backends: Backends | None = None) -> QueryEngine:
    from schemahub.metrics.views import run_history
    from schemahub.quality.certificates import views as certificate_views
    from schemahub.query.engine import QueryEngine

    backends = backends or open_backends(settings, create=False)
    return QueryEngine(trades_table(backends), version=version, as_of=as_of, access=backends.storage.access(),
                       views=[run_history(backends.storage), certificate_views(backends.storage)])


def check(settings: Settings, options: CheckOptions) -> list[CheckResult]:
    from schemahub.quality.checks import Checker, record_checks

    backends = open_backends(settings, create=False)
    engine = query_engine(settings, backends=backends)
    try:
        with runs.recording(backends.storage, "check", _emit(settings)) as record:
            results = Checker(backends.storage, trades_table(backends), engine).run(options)
            record_checks(record, results)
        return results
    finally:
        engine.close()


def certify(settings: Settings, exchanges: set[str] | None = None, *, cross_check: bool = True,
            stop: StopToken | None = None) -> CertifyReport:
    """Certificates for every closed day not certified yet or whose rows changed (one commit);
    ``cross_check``: compare each day with the venue's own aggregates (network requests)."""
    from schemahub.quality.certificates import certify as issue

    backends = open_backends(settings, create=False)
    engine = query_engine(settings, backends=backends)
    try:
        with runs.recording(backends.storage, "certify", _emit(settings)) as record, \
                LeaseKeeper(backends.locks, new_owner_id(), settings.locks.ttl) as keeper, \
                VenueAggregates(settings, stop) as venues:
            lease = keeper.acquire("certify")  # one certifier at a time: the MERGEs never race
            try:
                report = issue(backends.storage, engine, exchanges,
                               aggregates=venues if cross_check else None)
            finally:
                keeper.release(lease)
            record.details.update(report.to_dict())
        return report
    finally:
        engine.close()


def export(settings: Settings, output: str, request: ExportRequest, *, engine: QueryEngine | None = None,
           stop: StopToken | None = None, on_file: Callable[[str, bool], None] | None = None) -> ExportReport:
    """Export days of the table to ``output`` (a folder or ``s3://bucket/prefix``)."""
    from schemahub.quality.certificates import Certificates
    from schemahub.query.export import export as write_files

    backends = open_backends(settings, create=False)
    dest = _export_storage(settings, output)
    own = engine is None
    engine = engine or query_engine(settings, backends=backends)
    try:
        return write_files(engine, Certificates(backends.storage).rows(), dest, request, stop, on_file)
    finally:
        if own:
            engine.close()


def _export_storage(settings: Settings, output: str) -> Storage:
    if output.startswith("s3://"):
        from schemahub.infra.s3 import S3Storage

        s3 = S3Storage(output, settings.aws)
        s3.check()
        return s3
    if "://" in output:
        raise ConfigError(f"--output {output!r}: a folder or s3://bucket/prefix")
    root = Path(output).absolute()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, root, "cannot create the export folder") from None
    local = LocalStorage(root)
    local.remove_orphaned_temp_files()  # what a killed export left in its temp folder
    return local


def dashboard_html(settings: Settings) -> str:
    """The dashboard page for the lake, built now."""
    from schemahub.dashboard import data, render

    backends = open_backends(settings, create=False)
    engine = query_engine(settings, backends=backends)
    try:
        board = data.collect(settings.lake, backends.storage, engine)
    finally:
        engine.close()
    return render.page(board)
