"""Dense-id ingestion (Coinbase, Binance): id ranges fetched concurrently.

1. ask the exchange for its newest trade (the head H); with no checkpoint, find the first
   trade at/after ``--since`` (default: 24 hours ago) and record that cold start at once;
2. sweep leftovers of a crashed run above the watermark: a file covering exactly a
   planned chunk is adopted (not fetched again), any other one is deleted (it was never
   committed);
3. fetch chunks (W, W+1000], (W+1000, W+2000], ... up to H with ``chunk_concurrency`` in
   flight; each completed chunk becomes one raw file;
4. every ``commit_interval_s`` (and at the end) advance the watermark over the contiguous
   prefix of completed chunks. On a stop request, what is contiguous is committed and
   chunks in flight are abandoned.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from schemahub.errors import SchemahubError
from schemahub.ingest.plan import Chunk, Contiguity, plan_chunks
from schemahub.ingest.report import Status
from schemahub.ingest.run import ChunkOutcome, IngestOptions, ProductSink
from schemahub.sources.base import IdPagedSource

_POLL_S = 0.1


def ingest(source: IdPagedSource, sink: ProductSink, options: IngestOptions, since_us: int) -> None:
    state = sink.state
    item = state.report
    head = source.newest(state.product, item.stats)
    item.head_id = head.trade_id if head else None
    if head is None:
        item.status = Status.UP_TO_DATE
        return
    if state.stored is None:
        first = source.first_id_at_or_after(state.product, since_us, head, item.stats)
        state.start_after_id = state.watermark = first - 1
        # Record the cold start at once: a re-run after a crash resumes on the same chunk
        # grid (and adopts what was written) instead of searching again.
        sink.save_start()
    if head.trade_id <= state.watermark:
        item.status = Status.UP_TO_DATE
        return
    adoptable = sink.leftovers(head.trade_id, source.page_limit)
    sink.started(head.trade_id - state.watermark)
    tracker: Contiguity[ChunkOutcome] = Contiguity(state.watermark)
    failure = _fetch_all(source, sink, tracker, head.trade_id, adoptable, options)
    _advance(sink, tracker)
    if failure is not None:
        raise failure


def _fetch_all(source: IdPagedSource, sink: ProductSink, tracker: Contiguity[ChunkOutcome], head_id: int,
               adoptable: dict[Chunk, ChunkOutcome], options: IngestOptions) -> SchemahubError | None:
    """Keep ``chunk_concurrency`` chunks in flight; commit progress as it becomes contiguous."""
    chunks: Iterator[Chunk] = plan_chunks(tracker.watermark, head_id, source.page_limit)
    limit = max(1, options.chunk_concurrency)
    failure: SchemahubError | None = None
    last_commit = time.monotonic()

    def completed(chunk: Chunk, outcome: ChunkOutcome) -> None:
        tracker.complete(chunk, outcome)
        sink.note(outcome, chunk.size)

    def fetch(chunk: Chunk) -> ChunkOutcome:
        fetched = source.fetch_range(sink.state.product, chunk.lo, chunk.hi, sink.state.report.stats)
        return sink.write(fetched.trades, chunk.lo, chunk.hi, fetched.missing_ranges(), fetched.requests)

    pool = ThreadPoolExecutor(limit, thread_name_prefix=f"fetch-{sink.state.product.symbol}")
    try:
        in_flight: dict[Future[ChunkOutcome], Chunk] = {}

        def refill() -> None:
            while len(in_flight) < limit and not sink.stop.stopped:
                chunk = next(chunks, None)
                if chunk is None:
                    return
                adopted = adoptable.pop(chunk, None)
                if adopted is not None:
                    completed(chunk, adopted)
                    continue
                in_flight[pool.submit(fetch, chunk)] = chunk

        refill()
        while in_flight and not sink.stop.stopped:
            done, _ = wait(in_flight, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = in_flight.pop(future)
                try:
                    completed(chunk, future.result())
                except SchemahubError as exc:
                    failure = failure or exc
            if failure is None:
                refill()
            if time.monotonic() - last_commit >= options.commit_interval_s:
                _advance(sink, tracker)
                last_commit = time.monotonic()
    finally:
        # On a stop, chunks still in flight are abandoned: their requests end on their own
        # (the client refuses to go on) and whatever they write stays uncommitted.
        pool.shutdown(wait=not sink.stop.stopped, cancel_futures=True)
    return failure


def _advance(sink: ProductSink, tracker: Contiguity[ChunkOutcome]) -> None:
    ready = tracker.advance()
    if ready:
        sink.commit([outcome for _, outcome in ready], tracker.watermark)
