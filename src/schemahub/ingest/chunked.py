"""Dense-id ingestion (Coinbase, Binance): id ranges fetched concurrently, at both ends.

Forward, to the exchange's newest trade:

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

Backward, when ``--since`` lies before the product's first covered trade: the target T
(the id before the first trade at/after ``--since``) is recorded in the checkpoint first,
then chunks (L-1000, L], (L-2000, L-1000], ... down to T are fetched the same way, and the
low end L moves down only over the contiguous run of completed chunks below it. A re-run
after a crash resumes the recorded target on the same grid, adopting what was written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date, timedelta
from typing import Protocol

from schemahub.errors import SchemahubError
from schemahub.infra.checkpoints import Backfill
from schemahub.ingest import archived
from schemahub.ingest.plan import Chunk, Contiguity, DownwardContiguity, plan_chunks, plan_chunks_down
from schemahub.ingest.report import Status
from schemahub.ingest.run import ActiveProduct, ChunkOutcome, IngestOptions, PendingWrite, ProductSink
from schemahub.sources.archive import ArchiveSource
from schemahub.sources.base import IdPagedSource, RawTrade, RequestRecord, TradeRef
from schemahub.timeutil import from_us, now_us, to_us

_POLL_S = 0.1


class _Tracker(Protocol):
    watermark: int

    def complete(self, chunk: Chunk, payload: ChunkOutcome) -> None: ...

    def advance(self) -> list[tuple[Chunk, ChunkOutcome]]: ...


def ingest(source: IdPagedSource, sink: ProductSink, options: IngestOptions, since_us: int,
           archive: ArchiveSource | None = None) -> None:
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
    elif options.since_us is not None or state.backfill is not None:
        _extend_down(source, sink, options, head, archive)
    if head.trade_id <= state.watermark:
        if item.trades == 0:
            item.status = Status.UP_TO_DATE
        return
    adoptable = sink.leftovers(head.trade_id, source.page_limit)
    sink.started(head.trade_id - state.watermark)

    def commit(outcomes: list[ChunkOutcome], watermark: int) -> None:
        sink.commit(outcomes, watermark)

    job = _archive_job(source, sink, options, archive, commit)
    if job is not None and not sink.stop.stopped:
        # Whole days before the head's day are published (or about to be): archives first.
        first_day = _day_after(source, sink, state.watermark, state.watermark_us)
        last_day = from_us(head.time_us).date() - timedelta(days=1)
        if first_day <= last_day:
            archived.fill(job, state.watermark, head.trade_id, first_day, last_day)
        if options.source == "archive" or sink.stop.stopped:
            return  # archives only: the tail after the last published file waits for them
        adoptable = {}
    _run_chunks(source, sink, Contiguity(state.watermark), plan_chunks(state.watermark, head.trade_id,
                                                                       source.page_limit),
                adoptable, options, commit)


def _archive_job(source: IdPagedSource, sink: ProductSink, options: IngestOptions,
                 archive: ArchiveSource | None, commit: archived.Commit) -> archived.ArchiveJob | None:
    """How this product uses the venue's archive (None: REST only)."""
    dataset = archive.dataset_for(source.endpoint) if archive is not None else None
    if options.source == "rest" or archive is None or dataset is None:
        return None

    def rest_fill(lo: int, hi: int) -> None:
        _run_chunks(source, sink, Contiguity(lo), plan_chunks(lo, hi, source.page_limit), {}, options, commit)
        if sink.state.watermark < hi and not sink.stop.stopped:
            raise SchemahubError(f"ids ({lo}, {hi}] could not all be fetched")

    return archived.ArchiveJob(archive, dataset, options.source, source.endpoint, sink, rest_fill, commit)


def _day_after(source: IdPagedSource, sink: ProductSink, after_id: int, known_us: int | None) -> date:
    """The day of the first trade after ``after_id``: where archive files start to matter
    (one REST page when the time is not known yet, so years before a listing are not probed)."""
    if known_us is not None:
        return from_us(known_us).date()
    fetched = source.fetch_range(sink.state.product, after_id, after_id + source.page_limit,
                                 sink.state.report.stats)
    first = fetched.trades[0].record if fetched.trades else None
    return from_us(source.trade_time_us(first) if first is not None else now_us()).date()


def _asks_for_more(state: ActiveProduct, since_us: int) -> bool:
    """Whether ``--since`` lies before what earlier runs already covered (no search otherwise)."""
    covered = state.covered_since_us if state.covered_since_us is not None else state.first_us
    return covered is None or since_us < covered


def _extend_down(source: IdPagedSource, sink: ProductSink, options: IngestOptions, head: TradeRef,
                 archive: ArchiveSource | None) -> None:
    """History before the low end: down to the first trade at/after ``--since``."""
    state = sink.state
    backfill, since = state.backfill, options.since_us
    if since is not None and _asks_for_more(state, since):
        wanted = source.first_id_at_or_after(state.product, since, head, state.report.stats) - 1
        if backfill is None and wanted >= state.start_after_id:
            state.covered_since_us = since  # no trade between --since and the first covered one
            sink.save()
            return
        if backfill is None or backfill.target_after_id is None or wanted < backfill.target_after_id:
            backfill = Backfill(target_after_id=wanted, since=from_us(since))
            if _archive_job(source, sink, options, archive, lambda *_: None) is not None:
                backfill.after_id = backfill.through_id = wanted  # an upward segment (see below)
    if backfill is None or backfill.target_after_id is None:
        return
    target = backfill.target_after_id
    if backfill is not state.backfill:
        state.backfill = backfill
        sink.save()  # before anything is written for it: a re-run resumes this plan
    if target >= state.start_after_id:
        _reached(state, backfill)
        sink.save()
        return
    if backfill.through_id is not None:
        _extend_segment(source, sink, options, archive, backfill)
        return
    adoptable = sink.leftovers_below(target, source.page_limit)
    sink.started(state.start_after_id - target)
    tracker: DownwardContiguity[ChunkOutcome] = DownwardContiguity(state.start_after_id)
    chunks = plan_chunks_down(state.start_after_id, target, source.page_limit)

    def commit(outcomes: list[ChunkOutcome], low: int) -> None:
        if low <= target:
            _reached(state, backfill)
        # Outcomes come top down: the lowest one with trades holds the new first trade.
        firsts = [outcome.first_us for outcome in outcomes if outcome.first_us is not None]
        sink.extend_down(outcomes, low, firsts[-1] if firsts else None)

    _run_chunks(source, sink, tracker, chunks, adoptable, options, commit)


def _extend_segment(source: IdPagedSource, sink: ProductSink, options: IngestOptions,
                    archive: ArchiveSource | None, backfill: Backfill) -> None:
    """An extension that grows upwards from its target, as a forward run would: archive files
    for the days they cover, REST for the rest, until it meets the old low end and joins it."""
    state = sink.state
    low = state.start_after_id
    assert backfill.through_id is not None and backfill.after_id is not None
    sink.started(low - backfill.through_id)

    def commit(outcomes: list[ChunkOutcome], through: int) -> None:
        for outcome in outcomes:
            if backfill.first_trade_time is None and outcome.first_us is not None:
                backfill.first_trade_time = from_us(outcome.first_us)
            if outcome.last_us is not None:
                backfill.through_time = from_us(outcome.last_us)
        backfill.through_id = through
        if through < low:
            sink.extend_down(outcomes, low, None)  # the segment's progress; the low end stays
            return
        _reached(state, backfill)
        first = backfill.first_trade_time
        joined = low if backfill.after_id is None else backfill.after_id
        sink.extend_down(outcomes, joined, None if first is None else to_us(first))

    job = _archive_job(source, sink, options, archive, commit)
    first_us = state.first_us if state.first_us is not None else sink.first_covered_us()
    if job is not None and first_us is not None:
        known = None if backfill.through_time is None else to_us(backfill.through_time)
        first_day = _day_after(source, sink, backfill.through_id, known)
        archived.fill(job, backfill.through_id, low, first_day, from_us(first_us).date())
    if backfill.through_id < low and not sink.stop.stopped:
        _run_chunks(source, sink, Contiguity(backfill.through_id), plan_chunks(backfill.through_id, low,
                                                                               source.page_limit),
                    {}, options, commit)


def _reached(state: ActiveProduct, backfill: Backfill) -> None:
    """The extension is complete: history is covered from its ``--since`` on."""
    state.backfill = None
    if backfill.since is not None:
        since = to_us(backfill.since)
        covered = state.covered_since_us
        state.covered_since_us = since if covered is None else min(covered, since)


def _run_chunks(source: IdPagedSource, sink: ProductSink, tracker: _Tracker, chunks: Iterator[Chunk],
                adoptable: dict[Chunk, ChunkOutcome], options: IngestOptions,
                commit: Callable[[list[ChunkOutcome], int], None]) -> None:
    """Keep ``chunk_concurrency`` chunks in flight; commit progress as it becomes contiguous."""
    limit = max(1, options.chunk_concurrency)
    failure: SchemahubError | None = None
    last_commit = time.monotonic()

    coalescer = _Coalescer(sink, commit, options) if options.file_trades > 0 else None

    def completed(chunk: Chunk, outcome: ChunkOutcome) -> None:
        tracker.complete(chunk, outcome)
        sink.note(outcome, chunk.size)

    def fetch(chunk: Chunk) -> ChunkOutcome:
        fetched = source.fetch_range(sink.state.product, chunk.lo, chunk.hi, sink.state.report.stats)
        missing = fetched.missing_ranges()
        if coalescer is not None:
            return coalescer.pending(source, fetched.trades, missing, fetched.requests)
        return sink.write(fetched.trades, chunk.lo, chunk.hi, missing, fetched.requests)

    def advance(final: bool = False) -> None:
        ready = tracker.advance()
        if coalescer is not None:
            coalescer.add(ready, final)
        elif ready:
            commit([outcome for _, outcome in ready], tracker.watermark)

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
                advance()
                last_commit = time.monotonic()
        advance(final=True)
    finally:
        # On a stop, chunks still in flight are abandoned: their requests end on their own
        # (the client refuses to go on) and whatever they write stays uncommitted.
        pool.shutdown(wait=not sink.stop.stopped, cancel_futures=True)
    if failure is not None:
        raise failure


class _Coalescer:
    """Contiguous completed chunks, gathered into one raw file of about ``file_trades`` trades.

    On an object store every raw file is a PUT (and a GET for the transform): a thousand
    trades per file would make the store, not the exchange, the limit. The watermark moves
    only once the file holding the chunks exists; a crash before loses nothing but the
    fetching (the chunks are fetched again).
    """

    def __init__(self, sink: ProductSink, commit: Callable[[list[ChunkOutcome], int], None],
                 options: IngestOptions) -> None:
        self.sink, self.commit = sink, commit
        self.target, self.max_age = options.file_trades, options.file_age_s
        self.waiting: list[tuple[Chunk, ChunkOutcome]] = []
        self.trades = 0
        self.since = 0.0

    @staticmethod
    def pending(source: IdPagedSource, trades: list[RawTrade], missing: list[tuple[int, int]],
                requests: list[RequestRecord]) -> ChunkOutcome:
        """A fetched chunk that waits to be written (what the report and progress need, meanwhile)."""
        waiting = PendingWrite(trades, requests)
        if not trades:
            return ChunkOutcome(None, 0, None, None, None, None, missing, pending=waiting)
        first, last = trades[0], trades[-1]
        return ChunkOutcome(None, len(trades), first.trade_id, last.trade_id,
                            source.trade_time_us(first.record), source.trade_time_us(last.record), missing,
                            pending=waiting)

    def add(self, ready: list[tuple[Chunk, ChunkOutcome]], final: bool) -> None:
        for chunk, outcome in ready:
            if outcome.pending is None:  # adopted from a crashed run: already a file of its own
                self.flush()
                self.commit([outcome], chunk.hi)
                continue
            if not self.waiting:
                self.since = time.monotonic()
            self.waiting.append((chunk, outcome))
            self.trades += outcome.trades
        old = bool(self.waiting) and time.monotonic() - self.since >= self.max_age
        if final or old or self.trades >= self.target:
            self.flush()

    def flush(self) -> None:
        if not self.waiting:
            return
        lo, hi = self.waiting[0][0].lo, self.waiting[-1][0].hi
        pending = [outcome.pending for _, outcome in self.waiting if outcome.pending is not None]
        trades = [trade for p in pending for trade in p.trades]
        missing = [gap for _, outcome in self.waiting for gap in outcome.missing]
        requests = [request for p in pending for request in p.requests]
        written = self.sink.write(trades, lo, hi, missing, requests)
        report = self.sink.state.report
        report.files_written += int(written.key is not None)
        report.raw_bytes += written.raw_bytes
        self.waiting, self.trades = [], 0
        self.commit([written], hi)
