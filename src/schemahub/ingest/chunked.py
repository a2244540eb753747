"""Dense-id ingestion (Coinbase, Binance): id ranges fetched concurrently.

1. ask the exchange for its newest trade (the head H); with no checkpoint, find the first
   trade at/after ``--since`` (default: 24 hours ago) and record that cold start at once;
2. sweep leftovers of a crashed run above the watermark: a file covering exactly a
   planned chunk is adopted (not fetched again), any other one is deleted (it was never
   committed);
3. fetch chunks (W, W+1000], (W+1000, W+2000], ... up to H with ``chunk_concurrency`` in
   flight; each completed chunk becomes one raw file;
4. every ``commit_interval_s`` (and at the end) advance the watermark over the contiguous
   prefix of completed chunks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import TYPE_CHECKING

from schemahub.errors import CorruptState, SchemahubError
from schemahub.infra.checkpoints import Checkpoint, Stored
from schemahub.infra.locks import Lease, LeaseKeeper
from schemahub.ingest.plan import Chunk, Contiguity, plan_chunks
from schemahub.ingest.report import ProductReport, Status
from schemahub.ingest.run import ChunkOutcome, IngestOptions, ProductRun, micros
from schemahub.raw import files
from schemahub.raw.layout import parse_key, product_prefix
from schemahub.sources.base import IdPagedSource, Product, us_to_datetime

if TYPE_CHECKING:
    from schemahub.ingest.engine import Ingestor

log = logging.getLogger("schemahub.ingest")


def ingest(engine: Ingestor, product: Product, lease: Lease, keeper: LeaseKeeper,
           stored: Stored[Checkpoint] | None, options: IngestOptions, item: ProductReport) -> None:
    source = engine.source
    assert isinstance(source, IdPagedSource)
    head = source.newest(product, item.stats)
    item.head_id = head.trade_id if head else None
    if head is None:
        item.status = Status.UP_TO_DATE
        return
    if stored is not None:
        cp = stored.value
        known_us = None if cp.last_trade_time is None else micros(cp.last_trade_time)
        run = ProductRun(product, lease, keeper, item, stored, cp.start_after_id, cp.last_trade_id, known_us,
                         known_us or 0)
    else:
        item.cold_start = True
        since = options.since_us if options.since_us is not None else engine.default_since_us()
        first = source.first_id_at_or_after(product, since, head, item.stats)
        run = ProductRun(product, lease, keeper, item, None, first - 1, first - 1, None, since)
        # Record the cold start at once: a re-run after a crash resumes on the same chunk
        # grid (and adopts what was written) instead of searching again.
        engine.save_checkpoint(run)
    item.watermark_before = item.watermark_after = run.watermark
    if head.trade_id <= run.watermark:
        item.status = Status.UP_TO_DATE
        return
    adoptable = _sweep_leftovers(engine, run, head.trade_id)
    engine.progress.product_started(item.label, head.trade_id - run.watermark)
    tracker: Contiguity[ChunkOutcome] = Contiguity(run.watermark)
    failure = _fetch_all(engine, run, tracker, head.trade_id, adoptable, options)
    _advance(engine, run, tracker)
    if failure is not None:
        raise failure
    if engine.stopping and tracker.watermark < head.trade_id:
        item.status = Status.INTERRUPTED


def _fetch_all(engine: Ingestor, run: ProductRun, tracker: Contiguity[ChunkOutcome], head_id: int,
               adoptable: dict[Chunk, ChunkOutcome], options: IngestOptions) -> SchemahubError | None:
    """Keep ``chunk_concurrency`` chunks in flight; commit progress as it becomes contiguous."""
    source = engine.source
    chunks: Iterator[Chunk] = plan_chunks(tracker.watermark, head_id, source.page_limit)
    limit = max(1, options.chunk_concurrency)
    failure: SchemahubError | None = None
    last_commit = time.monotonic()

    def completed(chunk: Chunk, outcome: ChunkOutcome) -> None:
        tracker.complete(chunk, outcome)
        engine.note(run, outcome, chunk.size)

    with ThreadPoolExecutor(limit, thread_name_prefix=f"fetch-{run.product.symbol}") as pool:
        in_flight: dict[Future[ChunkOutcome], Chunk] = {}

        def refill() -> None:
            while len(in_flight) < limit and not engine.stopping:
                chunk = next(chunks, None)
                if chunk is None:
                    return
                adopted = adoptable.pop(chunk, None)
                if adopted is not None:
                    completed(chunk, adopted)
                    continue
                in_flight[pool.submit(_fetch_chunk, engine, run, chunk)] = chunk

        refill()
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = in_flight.pop(future)
                try:
                    completed(chunk, future.result())
                except SchemahubError as exc:
                    failure = failure or exc
            if failure is None:
                refill()
            if time.monotonic() - last_commit >= options.commit_interval_s:
                _advance(engine, run, tracker)
                last_commit = time.monotonic()
    return failure


def _fetch_chunk(engine: Ingestor, run: ProductRun, chunk: Chunk) -> ChunkOutcome:
    source = engine.source
    assert isinstance(source, IdPagedSource)
    fetched = source.fetch_range(run.product, chunk.lo, chunk.hi, run.report.stats)
    return engine.write_raw(run, fetched.trades, chunk.lo, chunk.hi, fetched.missing_ranges(),
                            fetched.requests)


def _advance(engine: Ingestor, run: ProductRun, tracker: Contiguity[ChunkOutcome]) -> None:
    ready = tracker.advance()
    if ready:
        engine.commit(run, [outcome for _, outcome in ready], tracker.watermark)


def _sweep_leftovers(engine: Ingestor, run: ProductRun, head_id: int) -> dict[Chunk, ChunkOutcome]:
    """Raw files above the watermark were never committed: adopt or delete them."""
    storage = engine.storage
    prefix = product_prefix(engine.exchange, run.product.symbol)
    watermark = run.watermark
    # Files are foldered by their first trade's day; start a day early for clock slack.
    day = (us_to_datetime(run.earliest_us) - timedelta(days=1)).date()
    size = engine.source.page_limit
    adoptable: dict[Chunk, ChunkOutcome] = {}
    for info in storage.list(prefix, start_after=f"{prefix}date={day.isoformat()}"):
        parsed = parse_key(info.key)
        if parsed is None or parsed.first_id <= watermark:
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
            on_grid = chunk.lo >= watermark and (chunk.lo - watermark) % size == 0
            if on_grid and chunk.hi == min(chunk.lo + size, head_id):
                adoptable[chunk] = ChunkOutcome.from_header(info.key, header, adopted=True)
                continue
        log.info("deleting uncommitted leftover %s (does not match this run's plan)", info.key)
        with contextlib.suppress(SchemahubError):
            storage.delete(info.key)
    return adoptable
