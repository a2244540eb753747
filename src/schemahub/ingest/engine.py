"""The ingest engine: products in parallel, each under its lease, into immutable raw files.

Per product, under its lease, the engine reads the checkpoint and hands the product to
the strategy its exchange's pagination calls for:

* ``chunked`` - dense trade ids (Coinbase, Binance): id ranges fetched concurrently, the
  watermark advancing over the contiguous prefix of completed ranges;
* ``sequential`` - an opaque cursor (Kraken): one page after another.

Both write each completed chunk or page as ONE raw file, named by its content, record
skipped ids in the gap log, and only then move the checkpoint forward (compare-and-swap).
A crash at any point leaves only complete raw files and a watermark that never covers a
trade that is not in one of them, so re-running converges to the same raw content.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from schemahub.errors import ConfigError, LockHeld, SchemahubError
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore, GapLogStore, Stored
from schemahub.infra.locks import Lease, LeaseKeeper, LockBackend, new_owner_id
from schemahub.infra.storage import Storage
from schemahub.ingest import chunked, sequential
from schemahub.ingest.plan import count_chunks
from schemahub.ingest.report import IngestReport, NullProgress, ProductReport, Progress, Status
from schemahub.ingest.run import ChunkOutcome, IngestOptions, ProductRun
from schemahub.raw import files
from schemahub.raw.layout import RawKey
from schemahub.sources.base import (
    IdPagedSource,
    Product,
    RawTrade,
    RequestRecord,
    TradeSource,
    us_to_datetime,
)

log = logging.getLogger("schemahub.ingest")

DEFAULT_LOOKBACK = timedelta(hours=24)

__all__ = ["ChunkOutcome", "IngestOptions", "Ingestor", "ProductRun"]


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
        """Ask every product to stop after its requests in flight (they are committed)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def default_since_us(self) -> int:
        return int((self._now() - DEFAULT_LOOKBACK.total_seconds()) * 1_000_000)

    # -- planning -------------------------------------------------------------------

    def load_checkpoints(self, products: list[Product]) -> dict[str, Stored[Checkpoint] | None]:
        """Read every checkpoint up front, so a corrupt one fails before anything is written."""
        found: dict[str, Stored[Checkpoint] | None] = {
            p.symbol: self.checkpoints.load(self.exchange, p.symbol) for p in products}
        for stored in found.values():
            if stored is not None and stored.value.endpoint != self.source.endpoint:
                cp = stored.value
                raise ConfigError(
                    f"{cp.exchange} {cp.symbol} was ingested from {cp.endpoint}, not {self.source.endpoint}: "
                    "their trade ids are different id spaces and must not be mixed in one product's "
                    "history (use another lake, or SCHEMAHUB_"
                    f"{self.exchange.upper()}_ENDPOINT={cp.endpoint})")
        return found

    def plan(self, products: list[Product], options: IngestOptions) -> IngestReport:
        """What a run would do: network reads only, nothing written."""
        report = IngestReport(self.run_id, self.exchange, datetime.now(UTC), dry_run=True)
        stored = self.load_checkpoints(products)
        for product in products:
            item = ProductReport(self.exchange, product.symbol, status=Status.PLANNED)
            cp = stored[product.symbol]
            item.watermark_before = cp.value.last_trade_id if cp else None
            if isinstance(self.source, IdPagedSource):
                head = self.source.newest(product, item.stats)
                item.head_id = head.trade_id if head else None
                if head is not None:
                    if cp is None:
                        since = options.since_us if options.since_us is not None else self.default_since_us()
                        item.watermark_before = self.source.first_id_at_or_after(
                            product, since, head, item.stats) - 1
                    assert item.watermark_before is not None
                    item.planned_requests = count_chunks(item.watermark_before, head.trade_id,
                                                         self.source.page_limit)
            report.products.append(item)
        rate = self.source.client.config.rate
        total = sum(p.planned_requests for p in report.products)
        report.estimated_seconds = total / rate if rate else None
        report.finished_at = datetime.now(UTC)
        return report

    # -- running --------------------------------------------------------------------

    def run(self, products: list[Product], options: IngestOptions) -> IngestReport:
        report = IngestReport(self.run_id, self.exchange, datetime.now(UTC))
        self.load_checkpoints(products)
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
                done = self._pass(pool, products, keeper, options, 0.0, report)
                held = [p for p in products if done[p.symbol].status is Status.SKIPPED]
                if held and options.lock_wait_s > 0 and not report.interrupted:
                    done.update(self._pass(pool, held, keeper, options, options.lock_wait_s, report))
                report.products = [done[p.symbol] for p in products]
            keeper.release(run_lease, forget=options.job is None)  # a run id is never reused
        report.finished_at = datetime.now(UTC)
        return report

    def _pass(self, pool: ThreadPoolExecutor, products: list[Product], keeper: LeaseKeeper,
              options: IngestOptions, wait_s: float, report: IngestReport) -> dict[str, ProductReport]:
        futures = [pool.submit(self._product, p, keeper, options, wait_s) for p in products]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            report.interrupted = True
            self.stop()
            log.warning("interrupted: finishing requests in flight and committing them")
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
        try:
            # Read under the lease: another process may have advanced it meanwhile.
            stored = self.checkpoints.load(self.exchange, product.symbol)
            strategy = chunked.ingest if isinstance(self.source, IdPagedSource) else sequential.ingest
            strategy(self, product, lease, keeper, stored, options, item)
        except SchemahubError as exc:
            item.status, item.error = Status.FAILED, str(exc)
            log.error("%s %s failed: %s", self.exchange, product.symbol, exc)
        finally:
            keeper.release(lease)
            item.elapsed_s = time.monotonic() - started
            self.progress.product_finished(item)
        return item

    def _acquire(self, keeper: LeaseKeeper, name: str, wait_s: float) -> Lease:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return keeper.acquire(name)
            except LockHeld:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise
            self._stop.wait(min(1.0, max(0.05, deadline - time.monotonic())))

    # -- what both strategies share -------------------------------------------------

    def write_raw(self, run: ProductRun, trades: list[RawTrade], lo: int, hi: int,
                  missing: list[tuple[int, int]], requests: list[RequestRecord]) -> ChunkOutcome:
        """One immutable raw file for the trades covering ids (lo, hi] (none: no file)."""
        if not trades:
            return ChunkOutcome(None, 0, None, None, None, None, missing)
        product = run.product
        first, last = trades[0], trades[-1]
        first_us = self.source.trade_time_us(first.record)
        last_us = self.source.trade_time_us(last.record)
        header = files.RawHeader(
            exchange=self.exchange, symbol=product.symbol, native_id=product.native_id,
            endpoint=self.source.endpoint, time_unit=self.source.time_unit,
            covers_after_id=lo, covers_through_id=hi,
            first_trade_id=first.trade_id, last_trade_id=last.trade_id, trade_count=len(trades),
            first_trade_time=us_to_datetime(first_us), last_trade_time=us_to_datetime(last_us),
            missing_ids=missing, fetched_at=max(r.fetched_at for r in requests),
            requests=[files.request_meta(r) for r in requests],
            writer=files.WriterMeta(run_id=self.run_id, owner=self.owner, lease_token=run.lease.token),
        )
        key = RawKey(self.exchange, product.symbol, us_to_datetime(first_us).date(),
                     first.trade_id, last.trade_id).key
        data = files.encode(header, trades)
        run.keeper.check(run.lease)
        written = self.storage.create(key, data)
        if not written:
            log.info("raw file %s already exists (same trade range); keeping the existing one", key)
        return ChunkOutcome(key, len(trades), first.trade_id, last.trade_id, first_us, last_us, missing,
                            raw_bytes=len(data) if written else 0)

    def note(self, run: ProductRun, outcome: ChunkOutcome, ids_covered: int) -> None:
        """Count a completed chunk or page in the report and the progress display."""
        item = run.report
        if outcome.first_id is not None and outcome.last_id is not None:
            assert outcome.first_us is not None and outcome.last_us is not None
            item.note_trades(outcome.first_id, outcome.last_id, outcome.first_us, outcome.last_us,
                             outcome.trades)
        item.files_adopted += int(outcome.adopted)
        item.files_written += int(outcome.key is not None and not outcome.adopted)
        item.raw_bytes += outcome.raw_bytes
        item.missing_ids += sum(b - a + 1 for a, b in outcome.missing)
        self.progress.chunk_done(item.label, ids_covered, outcome.trades, item.stats)

    def commit(self, run: ProductRun, outcomes: list[ChunkOutcome], watermark: int,
               cursor: str | None = None) -> None:
        """Move the watermark over committed outcomes: gap log first, then the checkpoint."""
        missing = [gap for outcome in outcomes for gap in outcome.missing]
        if missing:
            run.keeper.check(run.lease)
            self.gap_log.add(self.exchange, run.product.symbol, missing, run_id=self.run_id,
                             detected_at=datetime.now(UTC))
        for outcome in outcomes:
            if outcome.last_us is not None:
                run.watermark_us = outcome.last_us
        run.watermark = watermark
        run.cursor = cursor if cursor is not None else run.cursor
        self.save_checkpoint(run)
        run.report.watermark_after = watermark

    def save_checkpoint(self, run: ProductRun) -> None:
        checkpoint = Checkpoint(
            exchange=self.exchange, symbol=run.product.symbol, endpoint=self.source.endpoint,
            start_after_id=run.start_after_id, last_trade_id=run.watermark,
            last_trade_time=None if run.watermark_us is None else us_to_datetime(run.watermark_us),
            cursor=run.cursor, updated_at=datetime.now(UTC), run_id=self.run_id,
            lease_token=run.lease.token,
        )
        run.keeper.check(run.lease)
        run.stored = self.checkpoints.commit(checkpoint, run.stored)
