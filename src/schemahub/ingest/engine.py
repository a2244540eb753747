"""The ingest engine: products in parallel, chunks in flight per product, raw files, watermarks.

Per product, under its lease:

1. read the checkpoint; ask the exchange for its newest trade (the head H);
2. with no checkpoint, find the first trade at/after ``--since`` (default: 24 hours ago);
3. sweep leftovers of a crashed run above the watermark: a file covering exactly a
   planned chunk is adopted (not fetched again), any other one is deleted (it was never
   committed);
4. fetch chunks (W, H] with ``chunk_concurrency`` in flight; each completed chunk becomes
   ONE immutable raw file, written atomically under a deterministic name;
5. every ``commit_interval_s`` (and at the end) advance the watermark over the contiguous
   prefix of completed chunks: gap log first, then the checkpoint, by compare-and-swap.

A crash at any point leaves only complete raw files and a watermark that never covers
a trade that is not in one of them, so re-running converges to the same raw content.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemahub.errors import CorruptState, LockHeld, SchemahubError
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore, GapLogStore, Stored
from schemahub.infra.locks import Lease, LeaseKeeper, LockBackend, new_owner_id
from schemahub.infra.storage import Storage
from schemahub.ingest.plan import Chunk, Contiguity, count_chunks, first_id_at_or_after, plan_chunks
from schemahub.ingest.report import IngestReport, NullProgress, ProductReport, Progress, Status
from schemahub.raw import files
from schemahub.raw.layout import RawKey, parse_key, product_prefix
from schemahub.sources.base import Product, TradeRef, TradeSource, us_to_datetime

log = logging.getLogger("schemahub.ingest")

DEFAULT_LOOKBACK = timedelta(hours=24)


@dataclass(frozen=True)
class IngestOptions:
    since_us: int | None = None
    """Cold-start time for products without a checkpoint (default: 24 hours ago)."""
    workers: int = 4
    """Products ingested in parallel."""
    chunk_concurrency: int = 5
    """Chunks in flight per product."""
    commit_interval_s: float = 1.0
    lock_wait_s: float = 0.0
    """How long to wait for a product another process holds (0: skip it at once)."""
    job: str | None = None
    """A job name makes overlapping runs of the same job exclusive (cron, schedulers)."""


@dataclass(frozen=True)
class ChunkOutcome:
    key: str | None
    trades: int
    first_id: int | None
    last_id: int | None
    first_us: int | None
    last_us: int | None
    missing: list[tuple[int, int]]
    adopted: bool = False

    @classmethod
    def from_header(cls, key: str, h: files.RawHeader, adopted: bool) -> ChunkOutcome:
        return cls(key, h.trade_count, h.first_trade_id, h.last_trade_id,
                   _us(h.first_trade_time), _us(h.last_trade_time),
                   [(a, b) for a, b in h.missing_ids], adopted)


@dataclass(frozen=True)
class _Start:
    watermark: int
    watermark_us: int | None
    """Time of the watermark trade, when known (it is not right after a cold start)."""
    start_after_id: int
    earliest_us: int
    """No uncommitted file of this product can hold a trade older than this."""


@dataclass
class _ProductState:
    product: Product
    lease: Lease
    report: ProductReport
    stored: Stored[Checkpoint] | None
    start: _Start
    tracker: Contiguity[ChunkOutcome] = field(init=False)
    watermark_us: int | None = None

    def __post_init__(self) -> None:
        self.tracker = Contiguity(self.start.watermark)
        self.watermark_us = self.start.watermark_us


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class Ingestor:
    """Runs ingestion for one exchange against one lake."""

    def __init__(self, source: TradeSource, storage: Storage, locks: LockBackend, *,
                 lock_ttl: float = 30.0, run_id: str | None = None, owner: str | None = None,
                 progress: Progress | None = None, now: Callable[[], float] = time.time) -> None:
        self.source = source
        self.exchange = source.name
        self.storage = storage
        self.locks = locks
        self.lock_ttl = lock_ttl
        self.run_id = run_id or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.owner = owner or new_owner_id()
        self.progress: Progress = progress or NullProgress()
        self.checkpoints = CheckpointStore(storage)
        self.gap_log = GapLogStore(storage)
        self._now = now
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask every product to stop after its chunks in flight (they are committed)."""
        self._stop.set()

    # -- planning -------------------------------------------------------------------

    def load_checkpoints(self, products: list[Product]) -> dict[str, Stored[Checkpoint] | None]:
        """Read every checkpoint up front, so a corrupt one fails before anything is written."""
        return {p.symbol: self.checkpoints.load(self.exchange, p.symbol) for p in products}

    def plan(self, products: list[Product], options: IngestOptions) -> IngestReport:
        """What a run would do: network reads only, nothing written."""
        report = IngestReport(self.run_id, self.exchange, datetime.now(UTC), dry_run=True)
        stored = self.load_checkpoints(products)
        for product in products:
            item = ProductReport(self.exchange, product.symbol, status=Status.PLANNED)
            head = self.source.newest(product, item.stats)
            item.head_id = head.trade_id if head else None
            if head is not None:
                start = self._start(product, stored[product.symbol], head, options, item)
                item.watermark_before = start.watermark
                item.planned_requests = count_chunks(start.watermark, head.trade_id, self.source.page_limit)
            report.products.append(item)
        rate = self.source.client.config.rate
        total = sum(p.planned_requests for p in report.products)
        report.estimated_seconds = total / rate if rate else None
        report.finished_at = datetime.now(UTC)
        return report

    def _start(self, product: Product, stored: Stored[Checkpoint] | None, head: TradeRef,
               options: IngestOptions, item: ProductReport) -> _Start:
        """Where this product's ingestion resumes (checkpoint) or begins (cold start)."""
        if stored is not None:
            cp = stored.value
            known_us = None if cp.last_trade_time is None else _us(cp.last_trade_time)
            return _Start(cp.last_trade_id, known_us, cp.start_after_id, known_us or 0)
        item.cold_start = True
        since = options.since_us
        if since is None:
            since = int((self._now() - DEFAULT_LOOKBACK.total_seconds()) * 1_000_000)
        first = first_id_at_or_after(lambda i: self.source.window_at(product, i, item.stats), head, since)
        return _Start(first - 1, None, first - 1, since)

    # -- running --------------------------------------------------------------------

    def run(self, products: list[Product], options: IngestOptions) -> IngestReport:
        report = IngestReport(self.run_id, self.exchange, datetime.now(UTC))
        self.load_checkpoints(products)
        with LeaseKeeper(self.locks, self.owner, self.lock_ttl) as keeper:
            try:
                run_lease = keeper.acquire(f"run/{options.job or self.run_id}")
            except LockHeld as exc:
                raise LockHeld(f"another run of job {options.job!r} is active ({exc}); exiting",
                               name=exc.name, owner=exc.owner) from None
            with ThreadPoolExecutor(max(1, options.workers), thread_name_prefix="product") as pool:
                futures = [pool.submit(self._product, p, keeper, options) for p in products]
                try:
                    for future in futures:
                        future.result()
                except KeyboardInterrupt:
                    report.interrupted = True
                    self.stop()
                    log.warning("interrupted: finishing chunks in flight and committing them")
                report.products = [f.result() for f in futures]
            keeper.release(run_lease, forget=options.job is None)  # a run id is never reused
        report.finished_at = datetime.now(UTC)
        return report

    def _product(self, product: Product, keeper: LeaseKeeper, options: IngestOptions) -> ProductReport:
        item = ProductReport(self.exchange, product.symbol)
        started = time.monotonic()
        try:
            lease = self._acquire(keeper, f"ingest/{self.exchange}/{product.symbol}", options)
        except LockHeld as exc:
            item.status, item.error = Status.SKIPPED, str(exc)
            self.progress.product_finished(item)
            return item
        try:
            # Read under the lease: another process may have advanced it meanwhile.
            stored = self.checkpoints.load(self.exchange, product.symbol)
            self._ingest(product, lease, keeper, stored, options, item)
        except SchemahubError as exc:
            item.status, item.error = Status.FAILED, str(exc)
            log.error("%s %s failed: %s", self.exchange, product.symbol, exc)
        finally:
            keeper.release(lease)
            item.elapsed_s = time.monotonic() - started
            self.progress.product_finished(item)
        return item

    def _acquire(self, keeper: LeaseKeeper, name: str, options: IngestOptions) -> Lease:
        deadline = time.monotonic() + options.lock_wait_s
        while True:
            try:
                return keeper.acquire(name)
            except LockHeld:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise
            self._stop.wait(min(1.0, max(0.05, deadline - time.monotonic())))

    def _ingest(self, product: Product, lease: Lease, keeper: LeaseKeeper,
                stored: Stored[Checkpoint] | None, options: IngestOptions, item: ProductReport) -> None:
        head = self.source.newest(product, item.stats)
        item.head_id = head.trade_id if head else None
        if head is None:
            item.status = Status.UP_TO_DATE
            return
        start = self._start(product, stored, head, options, item)
        item.watermark_before = item.watermark_after = start.watermark
        state = _ProductState(product, lease, item, stored, start)
        if stored is None:
            # Record the cold start at once: a re-run after a crash resumes on the same
            # chunk grid (and adopts what was written) instead of searching again.
            self._save_checkpoint(state, keeper)
        if head.trade_id <= start.watermark:
            item.status = Status.UP_TO_DATE
            return
        adoptable = self._sweep_leftovers(product, start, head.trade_id)
        self.progress.product_started(product.symbol, head.trade_id - start.watermark)
        failure = self._fetch_all(state, keeper, head.trade_id, adoptable, options)
        self._commit(state, keeper)
        if failure is not None:
            raise failure
        if self._stop.is_set() and state.tracker.watermark < head.trade_id:
            item.status = Status.INTERRUPTED

    def _fetch_all(self, state: _ProductState, keeper: LeaseKeeper, head_id: int,
                   adoptable: dict[Chunk, ChunkOutcome], options: IngestOptions) -> SchemahubError | None:
        """Keep ``chunk_concurrency`` chunks in flight; commit progress as it becomes contiguous."""
        chunks: Iterator[Chunk] = plan_chunks(state.tracker.watermark, head_id, self.source.page_limit)
        limit = max(1, options.chunk_concurrency)
        failure: SchemahubError | None = None
        last_commit = time.monotonic()
        with ThreadPoolExecutor(limit, thread_name_prefix=f"fetch-{state.product.symbol}") as pool:
            in_flight: dict[Future[ChunkOutcome], Chunk] = {}

            def refill() -> None:
                while len(in_flight) < limit and not self._stop.is_set():
                    chunk = next(chunks, None)
                    if chunk is None:
                        return
                    adopted = adoptable.pop(chunk, None)
                    if adopted is not None:
                        self._completed(state, chunk, adopted)
                        continue
                    future = pool.submit(self._fetch_chunk, state, keeper, chunk)
                    in_flight[future] = chunk

            refill()
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    chunk = in_flight.pop(future)
                    try:
                        self._completed(state, chunk, future.result())
                    except SchemahubError as exc:
                        failure = failure or exc
                if failure is None:
                    refill()
                if time.monotonic() - last_commit >= options.commit_interval_s:
                    self._commit(state, keeper)
                    last_commit = time.monotonic()
        return failure

    def _completed(self, state: _ProductState, chunk: Chunk, outcome: ChunkOutcome) -> None:
        state.tracker.complete(chunk, outcome)
        item = state.report
        if outcome.first_id is not None and outcome.last_id is not None:
            assert outcome.first_us is not None and outcome.last_us is not None
            item.note_trades(outcome.first_id, outcome.last_id, outcome.first_us, outcome.last_us,
                             outcome.trades)
        item.files_adopted += int(outcome.adopted)
        item.files_written += int(outcome.key is not None and not outcome.adopted)
        item.missing_ids += sum(b - a + 1 for a, b in outcome.missing)
        self.progress.chunk_done(state.product.symbol, chunk.size, outcome.trades, item.stats)

    def _fetch_chunk(self, state: _ProductState, keeper: LeaseKeeper, chunk: Chunk) -> ChunkOutcome:
        product = state.product
        fetched = self.source.fetch_range(product, chunk.lo, chunk.hi, state.report.stats)
        missing = fetched.missing_ranges()
        if not fetched.trades:
            return ChunkOutcome(None, 0, None, None, None, None, missing)
        first, last = fetched.trades[0], fetched.trades[-1]
        first_us = self.source.trade_time_us(first.record)
        last_us = self.source.trade_time_us(last.record)
        header = files.RawHeader(
            exchange=self.exchange, symbol=product.symbol, native_id=product.native_id,
            covers_after_id=chunk.lo, covers_through_id=chunk.hi,
            first_trade_id=first.trade_id, last_trade_id=last.trade_id, trade_count=len(fetched.trades),
            first_trade_time=us_to_datetime(first_us), last_trade_time=us_to_datetime(last_us),
            missing_ids=missing, fetched_at=max(r.fetched_at for r in fetched.requests),
            requests=[files.request_meta(r) for r in fetched.requests],
            writer=files.WriterMeta(run_id=self.run_id, owner=self.owner, lease_token=state.lease.token),
        )
        key = RawKey(self.exchange, product.symbol, us_to_datetime(first_us).date(),
                     first.trade_id, last.trade_id).key
        data = files.encode(header, fetched.trades)
        keeper.check(state.lease)
        if not self.storage.create(key, data):
            log.info("raw file %s already exists (same trade range); keeping the existing one", key)
        return ChunkOutcome(key, len(fetched.trades), first.trade_id, last.trade_id, first_us, last_us,
                            missing)

    def _commit(self, state: _ProductState, keeper: LeaseKeeper) -> None:
        """Advance the watermark over newly contiguous chunks: gap log, then checkpoint."""
        ready = state.tracker.advance()
        if not ready:
            return
        item = state.report
        missing = [gap for _, outcome in ready for gap in outcome.missing]
        if missing:
            keeper.check(state.lease)
            self.gap_log.add(self.exchange, state.product.symbol, missing, run_id=self.run_id,
                             detected_at=datetime.now(UTC))
        for _, outcome in ready:
            if outcome.last_us is not None:
                state.watermark_us = outcome.last_us
        self._save_checkpoint(state, keeper)
        item.watermark_after = state.tracker.watermark

    def _save_checkpoint(self, state: _ProductState, keeper: LeaseKeeper) -> None:
        checkpoint = Checkpoint(
            exchange=self.exchange, symbol=state.product.symbol,
            start_after_id=state.start.start_after_id, last_trade_id=state.tracker.watermark,
            last_trade_time=None if state.watermark_us is None else us_to_datetime(state.watermark_us),
            updated_at=datetime.now(UTC), run_id=self.run_id, lease_token=state.lease.token,
        )
        keeper.check(state.lease)
        state.stored = self.checkpoints.commit(checkpoint, state.stored)

    def _sweep_leftovers(self, product: Product, start: _Start, head_id: int) -> dict[Chunk, ChunkOutcome]:
        """Raw files above the watermark were never committed: adopt or delete them."""
        prefix = product_prefix(self.exchange, product.symbol)
        watermark = start.watermark
        # Files are foldered by their first trade's day; start a day early for clock slack.
        day = (us_to_datetime(start.earliest_us) - timedelta(days=1)).date()
        start_after = f"{prefix}date={day.isoformat()}"
        size = self.source.page_limit
        adoptable: dict[Chunk, ChunkOutcome] = {}
        for info in self.storage.list(prefix, start_after=start_after):
            parsed = parse_key(info.key)
            if parsed is None or parsed.first_id <= watermark:
                continue
            data = self.storage.read(info.key)
            if data is None:
                continue
            try:
                header = files.read_header(data, self.storage.url_for(info.key))
            except CorruptState:
                header = None
            if header is not None:
                chunk = Chunk(header.covers_after_id, header.covers_through_id)
                on_grid = chunk.lo >= watermark and (chunk.lo - watermark) % size == 0
                if on_grid and chunk.hi == min(chunk.lo + size, head_id):
                    adoptable[chunk] = ChunkOutcome.from_header(info.key, header, adopted=True)
                    continue
            log.info("deleting uncommitted leftover %s (does not match this run's plan)", info.key)
            with contextlib.suppress(SchemahubError):
                self.storage.delete(info.key)
        return adoptable
