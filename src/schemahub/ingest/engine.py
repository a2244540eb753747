"""The ingest engine: one exchange's products in parallel, each under its lease, into raw files.

Per product, under its lease, the engine reads the checkpoint and hands the product to
the strategy its exchange's pagination calls for:

* ``chunked`` - dense trade ids (Coinbase, Binance): id ranges fetched concurrently, the
  watermark advancing over the contiguous prefix of completed ranges;
* ``sequential`` - an opaque cursor (Kraken): one page after another.

Both write each completed chunk or page as ONE raw file, named by its content, record
skipped ids in the gap log, and only then move the checkpoint forward (compare-and-swap).
A crash at any point leaves only complete raw files and a watermark that never covers a
trade that is not in one of them, so re-running converges to the same raw content.

A failure stays with its product: an unreadable checkpoint, a refused endpoint switch or
an exchange error fails that product (with its cause in the report) and the others run
on. A stop request (SIGINT/SIGTERM) ends every product within a fraction of a second:
requests in flight are abandoned, what was committed stays, leases are released.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from schemahub.errors import ConfigError, CorruptState, Interrupted, LockHeld, SchemahubError
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore, GapLogStore, Stored
from schemahub.infra.locks import Lease, LeaseKeeper, LockBackend, new_owner_id
from schemahub.infra.storage import Storage
from schemahub.ingest import chunked, daily, sequential
from schemahub.ingest.plan import Chunk, count_chunks
from schemahub.ingest.report import IngestReport, NullProgress, ProductReport, Progress, Status
from schemahub.ingest.run import ActiveProduct, ChunkOutcome, IngestOptions
from schemahub.raw import files
from schemahub.raw.layout import RawKey, archive_key, parse_key, product_prefix
from schemahub.sources.archive import ArchiveSource, Fetched
from schemahub.sources.base import (
    ArchiveOnlySource,
    CursorPagedSource,
    IdPagedSource,
    Product,
    RawTrade,
    RequestRecord,
    TradeSource,
    is_derived,
)
from schemahub.stop import StopToken
from schemahub.timeutil import from_us, new_run_id, to_us

log = logging.getLogger("schemahub.ingest")

DEFAULT_LOOKBACK = timedelta(hours=24)


class Ingestor:
    """Runs ingestion for one exchange against one lake."""

    def __init__(self, source: TradeSource, storage: Storage, locks: LockBackend, *,
                 lock_ttl: float = 30.0, run_id: str | None = None, owner: str | None = None,
                 progress: Progress | None = None, now: Callable[[], float] = time.time,
                 stop: StopToken | None = None, archive: ArchiveSource | None = None) -> None:
        self.source = source
        self.archive = archive
        """The venue's bulk archive, where it has one (``IngestOptions.source`` says when to use it)."""
        self.exchange = source.name
        self.storage = storage
        self.locks = locks
        self.lock_ttl = lock_ttl
        self.run_id = run_id or new_run_id()
        self.owner = owner or new_owner_id()
        self.progress: Progress = progress or NullProgress()
        self.checkpoints = CheckpointStore(storage)
        self.gap_log = GapLogStore(storage)
        self.stop = stop or StopToken()
        self._now = now

    def default_since_us(self) -> int:
        return int((self._now() - DEFAULT_LOOKBACK.total_seconds()) * 1_000_000)

    def since_us(self, options: IngestOptions) -> int:
        return options.since_us if options.since_us is not None else self.default_since_us()

    def load_checkpoint(self, product: Product) -> Stored[Checkpoint] | None:
        """The product's checkpoint; refuses one written from another endpoint's id space."""
        stored = self.checkpoints.load(self.exchange, product.symbol)
        if stored is not None and stored.value.endpoint != self.source.endpoint:
            cp = stored.value
            raise ConfigError(
                f"{cp.exchange} {cp.symbol} was ingested from {cp.endpoint}, not {self.source.endpoint}: "
                "their trade ids are different id spaces and must not be mixed in one product's "
                f"history (use another lake, or SCHEMAHUB_{self.exchange.upper()}_ENDPOINT={cp.endpoint})")
        return stored

    # -- planning -------------------------------------------------------------------

    def plan(self, products: list[Product], options: IngestOptions) -> IngestReport:
        """What a run would do: network reads only, nothing written."""
        report = IngestReport(self.run_id, self.exchange, datetime.now(UTC), dry_run=True)
        for product in products:
            item = ProductReport(self.exchange, product.symbol, status=Status.PLANNED)
            try:
                self._plan_product(product, options, item)
            except Interrupted:
                item.status, report.interrupted = Status.INTERRUPTED, True
            except SchemahubError as exc:
                item.fail(str(exc), config=isinstance(exc, ConfigError))
            report.products.append(item)
        bucket = self.source.client.bucket
        if bucket.rate is not None:  # the bucket's burst goes at once; the rest at its rate
            weight = self.source.page_weight.get(self.source.endpoint, 1)
            total = sum(p.planned_requests for p in report.products) * weight
            report.estimated_seconds = max(0.0, total - bucket.capacity) / bucket.rate
        report.finished_at = datetime.now(UTC)
        return report

    def _plan_product(self, product: Product, options: IngestOptions, item: ProductReport) -> None:
        cp = self.load_checkpoint(product)
        item.watermark_before = cp.value.last_trade_id if cp else None
        if isinstance(self.source, IdPagedSource):
            head = self.source.newest(product, item.stats)
            item.head_id = head.trade_id if head else None
            if head is None:
                return
            if cp is None:
                item.watermark_before = self.source.first_id_at_or_after(
                    product, self.since_us(options), head, item.stats) - 1
            assert item.watermark_before is not None
            # the run repeats what planning asked (head, cold-start search), then one request a chunk
            item.planned_requests = item.stats.snapshot().requests + count_chunks(
                item.watermark_before, head.trade_id, self.source.page_limit)
        elif isinstance(self.source, CursorPagedSource):
            since = self.since_us(options)
            if cp is not None and cp.value.last_trade_time is not None:
                since = to_us(cp.value.last_trade_time)
            item.planned_requests = self.source.estimate_pages(product, since, item.stats)
        elif isinstance(self.source, ArchiveOnlySource) and self.archive is not None:
            # the folder's index, then one file a listed day up to yesterday's
            next_day = cp.value.cursor if cp is not None and cp.value.cursor else None
            day = date.fromisoformat(next_day) if next_day else from_us(self.since_us(options)).date()
            yesterday = datetime.now(UTC).date() - timedelta(days=1)
            dataset = self.archive.dataset_for(self.source.endpoint) or ""
            listed = self.archive.listing(product, dataset, item.stats)
            days = ((yesterday - day).days + 1 if listed is None
                    else sum(day <= d <= yesterday for d in listed))
            item.planned_requests = item.stats.snapshot().requests + max(0, days)

    # -- running --------------------------------------------------------------------

    def run(self, products: list[Product], options: IngestOptions) -> IngestReport:
        report = IngestReport(self.run_id, self.exchange, datetime.now(UTC))
        with LeaseKeeper(self.locks, self.owner, self.lock_ttl) as keeper:
            try:
                name = f"run/{options.job}/{self.exchange}" if options.job else f"run/{self.run_id}"
                run_lease = keeper.acquire(name)
            except LockHeld as exc:
                raise LockHeld(f"another run of job {options.job!r} is active ({exc}); exiting",
                               name=exc.name, owner=exc.owner) from None
            with ThreadPoolExecutor(max(1, options.workers), thread_name_prefix="product") as pool:
                # Pass 1 takes what is free; pass 2 (with --lock-wait) waits for what others
                # hold. Several processes thus split the products by lease ownership, and a
                # dead one's products are taken over once its leases expire.
                done = self._pass(pool, products, keeper, options, 0.0)
                held = [p for p in products if done[p.symbol].status is Status.SKIPPED]
                if held and options.lock_wait_s > 0 and not self.stop.stopped:
                    done.update(self._pass(pool, held, keeper, options, options.lock_wait_s))
                report.products = [done[p.symbol] for p in products]
            keeper.release(run_lease, forget=options.job is None)  # a run id is never reused
        report.interrupted = self.stop.stopped
        report.finished_at = datetime.now(UTC)
        return report

    def _pass(self, pool: ThreadPoolExecutor, products: list[Product], keeper: LeaseKeeper,
              options: IngestOptions, wait_s: float) -> dict[str, ProductReport]:
        futures = [pool.submit(self._product, p, keeper, options, wait_s) for p in products]
        return {p.symbol: f.result() for p, f in zip(products, futures, strict=True)}

    def _product(self, product: Product, keeper: LeaseKeeper, options: IngestOptions,
                 wait_s: float) -> ProductReport:
        item = ProductReport(self.exchange, product.symbol)
        started = time.monotonic()
        try:
            lease = self._acquire(keeper, f"ingest/{self.exchange}/{product.symbol}", wait_s)
        except LockHeld as exc:
            item.status, item.error = Status.SKIPPED, str(exc)
            if wait_s > 0 or options.lock_wait_s == 0:
                self.progress.product_finished(item)  # final: no second pass will try it
            return item
        except Interrupted:
            item.status = Status.INTERRUPTED
            return item

        def work(sink: ProductWriter) -> None:
            if isinstance(self.source, IdPagedSource):
                chunked.ingest(self.source, sink, options, self.since_us(options), self.archive)
            elif isinstance(self.source, ArchiveOnlySource):
                assert self.archive is not None, "an archive-only venue always has its archive"
                daily.ingest(self.source, sink, self.since_us(options), self.archive, options.since_us)
            else:
                assert isinstance(self.source, CursorPagedSource)
                sequential.ingest(self.source, sink, options.since_us)

        self._under_lease(product, keeper, lease, item, options, work)
        item.elapsed_s = time.monotonic() - started
        self.progress.product_finished(item)
        return item

    def _under_lease(self, product: Product, keeper: LeaseKeeper, lease: Lease, item: ProductReport,
                     options: IngestOptions, work: Callable[[ProductWriter], None]) -> None:
        """``work`` on one product under its lease; its failure stays in ``item``, and the lease
        is released however it ends."""
        try:
            # Read under the lease: another process may have advanced it meanwhile.
            stored = self.load_checkpoint(product)
            work(ProductWriter(self, keeper, lease, item, self._start(product, stored, item, options)))
            if self.stop.stopped and item.status is Status.OK:
                item.status = Status.INTERRUPTED
        except Interrupted:
            item.status = Status.INTERRUPTED
        except SchemahubError as exc:
            item.fail(str(exc), config=isinstance(exc, ConfigError))
        finally:
            keeper.release(lease)

    def repair(self, products: list[Product]) -> IngestReport:
        """Fetch every product's requested repair ranges again (ingest/repair.py), each under its
        product's lease; the watermark does not move (the ranges lie below it)."""
        from schemahub.ingest import repair

        report = IngestReport(self.run_id, self.exchange, datetime.now(UTC))
        with LeaseKeeper(self.locks, self.owner, self.lock_ttl) as keeper:
            for product in products:
                item = ProductReport(self.exchange, product.symbol)
                started = time.monotonic()
                try:
                    lease = keeper.acquire(f"ingest/{self.exchange}/{product.symbol}")
                except LockHeld as exc:
                    item.status, item.error = Status.SKIPPED, str(exc)
                    report.products.append(item)
                    continue
                def work(sink: ProductWriter) -> None:
                    repair.refetch(self.source, sink, self.storage, self.gap_log, self.run_id, self.archive)

                self._under_lease(product, keeper, lease, item, IngestOptions(), work)
                item.elapsed_s = time.monotonic() - started
                report.products.append(item)
        report.interrupted = self.stop.stopped
        report.finished_at = datetime.now(UTC)
        return report

    def _start(self, product: Product, stored: Stored[Checkpoint] | None, item: ProductReport,
               options: IngestOptions) -> ActiveProduct:
        """Where this run starts: the checkpoint's watermark, or a cold start at --since."""
        if stored is None:
            item.cold_start = True
            since = self.since_us(options)
            return ActiveProduct(product, item, None, 0, 0, None, since, covered_since_us=since,
                                 first_pending=True)
        cp = stored.value
        known_us = None if cp.last_trade_time is None else to_us(cp.last_trade_time)
        first_us = None if cp.first_trade_time is None else to_us(cp.first_trade_time)
        covered_since = None if cp.covered_since is None else to_us(cp.covered_since)
        item.watermark_before = item.watermark_after = cp.last_trade_id
        item.low_before = item.low_after = cp.start_after_id
        # Nothing covered yet (a cold start recorded before a crash): the first commit sets it.
        pending = first_us is None and cp.last_trade_id == cp.start_after_id and cp.derived_through_id is None
        backfill = None if cp.backfill is None else cp.backfill.model_copy()
        return ActiveProduct(product, item, stored, cp.start_after_id, cp.last_trade_id, known_us,
                             known_us or 0, cp.cursor, cp.derived_after_id, cp.derived_through_id, first_us,
                             covered_since, pending, backfill)

    def _acquire(self, keeper: LeaseKeeper, name: str, wait_s: float) -> Lease:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return keeper.acquire(name)
            except LockHeld:
                if time.monotonic() >= deadline or self.stop.stopped:
                    raise
            self.stop.wait(min(1.0, max(0.05, deadline - time.monotonic())))
            self.stop.check()


class ProductWriter:
    """The ``ProductSink`` of one product under its lease: raw files, gap log, checkpoint."""

    def __init__(self, engine: Ingestor, keeper: LeaseKeeper, lease: Lease, report: ProductReport,
                 state: ActiveProduct) -> None:
        self.engine = engine
        self.keeper = keeper
        self.lease = lease
        self.report = report
        self.state = state
        self.stop = engine.stop

    def started(self, total_ids: int | None) -> None:
        self.engine.progress.product_started(self.report.label, total_ids)

    def save_start(self) -> None:
        self.report.watermark_before = self.report.watermark_after = self.state.watermark
        self._save_checkpoint()

    def write(self, trades: list[RawTrade], lo: int, hi: int, missing: list[tuple[int, int]],
              requests: list[RequestRecord]) -> ChunkOutcome:
        if not trades:
            return ChunkOutcome(None, 0, None, None, None, None, missing)
        engine, product = self.engine, self.state.product
        first, last = trades[0], trades[-1]
        first_us = engine.source.trade_time_us(first.record)
        last_us = engine.source.trade_time_us(last.record)
        header = files.RawHeader(
            exchange=engine.exchange, symbol=product.symbol, native_id=product.native_id,
            endpoint=engine.source.endpoint, time_unit=engine.source.time_unit,
            covers_after_id=lo, covers_through_id=hi,
            first_trade_id=first.trade_id, last_trade_id=last.trade_id, trade_count=len(trades),
            first_trade_time=from_us(first_us), last_trade_time=from_us(last_us),
            missing_ids=missing, fetched_at=max(r.fetched_at for r in requests), requests=requests,
            writer=files.WriterMeta(run_id=engine.run_id, owner=engine.owner, lease_token=self.lease.token),
        )
        key = RawKey(engine.exchange, product.symbol, from_us(first_us).date(), first.trade_id,
                     last.trade_id).key
        data = files.encode(header, trades)
        self.keeper.check(self.lease)
        written = engine.storage.create(key, data)
        if not written:
            log.info("raw file %s already exists (same trade range); keeping the existing one", key)
        return ChunkOutcome(key, len(trades), first.trade_id, last.trade_id, first_us, last_us, missing,
                            raw_bytes=len(data) if written else 0)

    # -- bulk archives ------------------------------------------------------------------

    def spool(self) -> contextlib.AbstractContextManager[Path]:
        return self.engine.storage.spool()

    def downloaded(self, size: int) -> None:
        self.engine.progress.bytes_received(self.report.label, size)

    def store_archive(self, fetched: Fetched) -> str:
        engine = self.engine
        key = archive_key(engine.exchange, self.state.product.symbol, fetched.filename, fetched.sha256)
        self.keeper.check(self.lease)
        if engine.storage.create_file(key, fetched.path):
            self.report.raw_bytes += fetched.size
        else:
            log.info("archive file %s is already in the lake", key)
        return key

    def writer(self) -> files.WriterMeta:
        engine = self.engine
        return files.WriterMeta(run_id=engine.run_id, owner=engine.owner, lease_token=self.lease.token)

    def write_coverage(self, header: files.RawHeader) -> ChunkOutcome:
        engine = self.engine
        key = RawKey(engine.exchange, self.state.product.symbol, header.first_trade_time.date(),
                     header.first_trade_id, header.last_trade_id, archive=True).key
        data = files.encode_archive_header(header)
        self.keeper.check(self.lease)
        written = engine.storage.create(key, data)
        self.report.archive_files += 1
        return ChunkOutcome.from_header(key, header, adopted=False, raw_bytes=len(data) if written else 0)

    def note(self, outcome: ChunkOutcome, ids_covered: int) -> None:
        item = self.report
        if outcome.first_id is not None and outcome.last_id is not None:
            assert outcome.first_us is not None and outcome.last_us is not None
            item.note_trades(outcome.first_id, outcome.last_id, outcome.first_us, outcome.last_us,
                             outcome.trades)
        item.files_adopted += int(outcome.adopted)
        item.files_written += int(outcome.key is not None and not outcome.adopted)
        item.raw_bytes += outcome.raw_bytes
        item.missing_ids += sum(b - a + 1 for a, b in outcome.missing)
        self.engine.progress.chunk_done(item.label, ids_covered, outcome.trades, item.stats)

    def _log_gaps(self, outcomes: list[ChunkOutcome]) -> None:
        missing = [gap for outcome in outcomes for gap in outcome.missing]
        if missing:
            self.keeper.check(self.lease)
            self.engine.gap_log.add(self.engine.exchange, self.state.product.symbol, missing,
                                    run_id=self.engine.run_id, detected_at=datetime.now(UTC))

    def commit(self, outcomes: list[ChunkOutcome], watermark: int, cursor: str | None = None) -> None:
        state = self.state
        self._log_gaps(outcomes)
        for outcome in outcomes:
            if outcome.last_us is not None:
                state.watermark_us = outcome.last_us
            if state.first_pending and outcome.first_us is not None:
                state.first_us, state.first_pending = outcome.first_us, False
        state.watermark = watermark
        state.cursor = cursor if cursor is not None else state.cursor
        self._save_checkpoint()
        self.report.watermark_after = watermark

    def extend_down(self, outcomes: list[ChunkOutcome], low: int, first_us: int | None) -> None:
        state = self.state
        self._log_gaps(outcomes)
        state.first_us = first_us if first_us is not None else state.first_us
        state.start_after_id = low
        self._save_checkpoint()
        self.report.low_after = low

    def save(self) -> None:
        self._save_checkpoint()

    def first_covered_us(self) -> int | None:
        state = self.state
        if state.first_us is None:
            storage = self.engine.storage
            for info in storage.list(product_prefix(self.engine.exchange, state.product.symbol)):
                key = parse_key(info.key)
                covered = state.start_after_id < key.last_id <= state.watermark if key else False
                if key is not None and is_derived(key.first_id):
                    covered = (state.derived_after or 0) < key.last_id <= (state.derived_through or 0)
                if not covered:
                    continue
                header = files.read_header(storage.read(info.key) or b"", info.key)
                first = to_us(header.first_trade_time)
                state.first_us = first if state.first_us is None else min(state.first_us, first)
        return state.first_us

    def _save_checkpoint(self) -> None:
        state, engine = self.state, self.engine
        checkpoint = Checkpoint(
            exchange=engine.exchange, symbol=state.product.symbol, endpoint=engine.source.endpoint,
            start_after_id=state.start_after_id, last_trade_id=state.watermark,
            first_trade_time=None if state.first_us is None else from_us(state.first_us),
            covered_since=None if state.covered_since_us is None else from_us(state.covered_since_us),
            backfill=None if state.backfill is None else state.backfill.model_copy(),
            last_trade_time=None if state.watermark_us is None else from_us(state.watermark_us),
            cursor=state.cursor, derived_after_id=state.derived_after,
            derived_through_id=state.derived_through, updated_at=datetime.now(UTC),
            run_id=engine.run_id, lease_token=self.lease.token,
        )
        self.keeper.check(self.lease)
        state.stored = engine.checkpoints.commit(checkpoint, state.stored)

    def leftovers(self, head_id: int, chunk_size: int) -> dict[Chunk, ChunkOutcome]:
        """Raw files above the watermark were never committed: adopt or delete them."""
        watermark = self.state.watermark

        def planned(chunk: Chunk) -> bool:
            on_grid = chunk.lo >= watermark and (chunk.lo - watermark) % chunk_size == 0
            return on_grid and chunk.hi == min(chunk.lo + chunk_size, head_id)

        # Files are foldered by their first trade's day; start a day early for clock slack.
        day = (from_us(self.state.earliest_us) - timedelta(days=1)).date()
        return self._sweep(lambda key: key.first_id > watermark, planned, day)

    def leftovers_below(self, target: int, chunk_size: int) -> dict[Chunk, ChunkOutcome]:
        """Raw files between the backward target and the low end were never committed."""
        low = self.state.start_after_id

        def planned(chunk: Chunk) -> bool:
            on_grid = chunk.hi <= low and (low - chunk.hi) % chunk_size == 0
            return on_grid and chunk.lo == max(chunk.hi - chunk_size, target)

        return self._sweep(lambda key: target < key.last_id <= low, planned, None)

    def _sweep(self, uncommitted: Callable[[RawKey], bool], planned: Callable[[Chunk], bool],
               from_day: date | None) -> dict[Chunk, ChunkOutcome]:
        """Adopt the uncommitted raw files that match this run's plan; delete the others."""
        storage, state = self.engine.storage, self.state
        prefix = product_prefix(self.engine.exchange, state.product.symbol)
        start_after = None if from_day is None else f"{prefix}date={from_day.isoformat()}"
        adoptable: dict[Chunk, ChunkOutcome] = {}
        for info in storage.list(prefix, start_after=start_after):
            parsed = parse_key(info.key)
            if parsed is None or is_derived(parsed.first_id) or not uncommitted(parsed):
                continue
            data = storage.read(info.key)
            if data is None:
                continue
            try:
                header: files.RawHeader | None = files.read_header(data, storage.url_for(info.key))
            except CorruptState:
                header = None
            if header is not None:
                chunk = Chunk(header.covers_after_id, header.covers_through_id)
                if planned(chunk):
                    adoptable[chunk] = ChunkOutcome.from_header(info.key, header, adopted=True)
                    continue
            log.info("deleting uncommitted leftover %s (does not match this run's plan)", info.key)
            self.keeper.check(self.lease)
            with contextlib.suppress(SchemahubError):
                storage.delete(info.key)
        return adoptable
