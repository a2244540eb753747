"""Cursor-paged ingestion (Kraken): one page after another.

The cursor of the next page comes with each page and is stored in the checkpoint exactly
as received, together with the last trade id. Trades repeated across a page seam are
dropped by id; ids missing between two pages of a dense sequence go to the gap log. The
product is caught up when a page comes back short.

Old rows without a trade id get ids derived from their position (>= 10^18, see the
connector); real ids are small. The two are never compared: each kind has its own
covered range in the checkpoint, a page whose rows switch kinds is written as one raw
file per run of one kind, and a row is new when its id is above its own kind's range.
"""

from __future__ import annotations

from itertools import groupby

from schemahub.infra.checkpoints import Backfill
from schemahub.ingest.report import Status
from schemahub.ingest.run import ActiveProduct, ChunkOutcome, ProductSink
from schemahub.sources.base import CursorPage, CursorPagedSource, RangeFetch, RawTrade, is_derived
from schemahub.timeutil import from_us, to_us


def _is_new(state: ActiveProduct, trade: RawTrade, seen_any: bool) -> bool:
    if not seen_any:
        return True
    if is_derived(trade.trade_id):
        return state.derived_through is None or trade.trade_id > state.derived_through
    return state.watermark == state.start_after_id or trade.trade_id > state.watermark


def ingest(source: CursorPagedSource, sink: ProductSink, since_us: int | None = None) -> None:
    """Forward from the checkpoint's cursor (a cold start: from ``since``); then, for a product
    with history, back to ``since_us`` if that lies before its first covered trade."""
    state = sink.state
    item = state.report
    seen_any = state.stored is not None and state.stored.value.cursor is not None
    if not seen_any:
        state.cursor = source.start_cursor(state.product, state.earliest_us)
    sink.started(None)  # a cursor gives no count ahead
    while not sink.stop.stopped:
        requested = state.cursor
        assert requested is not None
        page = source.fetch_after(state.product, requested, item.stats)
        fresh = [t for t in page.trades if _is_new(state, t, seen_any)]
        if fresh:
            seen_any = True
            _write_page(sink, page, fresh)
        elif seen_any and page.next_cursor != requested:
            sink.commit([], state.watermark, cursor=page.next_cursor)
        if len(page.trades) < source.page_limit or page.next_cursor == requested:
            break  # a short page: caught up with the exchange
        state.cursor = page.next_cursor
    if seen_any and state.stored is not None and not sink.stop.stopped:
        extend_down(source, sink, since_us)
    if item.trades == 0 and item.status is Status.OK and not sink.stop.stopped:
        item.status = Status.UP_TO_DATE


def _write_page(sink: ProductSink, page: CursorPage, fresh: list[RawTrade]) -> None:
    """One raw file per run of same-kind ids; the page committed with its next cursor."""
    state = sink.state
    outcomes: list[ChunkOutcome] = []
    for derived, group in groupby(fresh, key=lambda t: is_derived(t.trade_id)):
        trades = list(group)
        first, last = trades[0].trade_id, trades[-1].trade_id
        if derived:
            lo = state.derived_through if state.derived_through is not None else first - 1
            state.derived_after = lo if state.derived_after is None else state.derived_after
            state.derived_through = last
            missing: list[tuple[int, int]] = []
        else:
            if state.watermark == state.start_after_id:  # the first real id: the range starts here
                state.start_after_id = state.watermark = first - 1
            lo = state.watermark
            missing = RangeFetch(lo, last, trades).missing_ranges() if page.dense_ids else []
            state.watermark = last
        outcome = sink.write(trades, lo, last, missing, [page.request])
        sink.note(outcome, last - lo)
        outcomes.append(outcome)
    sink.commit(outcomes, state.watermark, cursor=page.next_cursor)


def extend_down(source: CursorPagedSource, sink: ProductSink, since_us: int | None) -> None:
    """History before the first covered trade, for a cursor venue: a separate run pages
    forward from ``--since`` towards the old start. The segment it covered so far and its next
    cursor are kept in the checkpoint (``backfill``), so a re-run resumes it; when it reaches
    the old start, trades already covered are dropped by id (and, for rows without an id, by
    time) and the segment joins the covered interval."""
    state = sink.state
    if state.backfill is None:
        if since_us is None:
            return
        covered = state.covered_since_us if state.covered_since_us is not None else sink.first_covered_us()
        if covered is None or since_us >= covered:
            return
        cursor = source.start_cursor(state.product, since_us)
        state.backfill = Backfill(since=from_us(since_us), cursor=cursor)
        sink.save()  # before anything is written for it: a re-run resumes this segment
    backfill = state.backfill
    assert backfill.cursor is not None
    sink.started(None)
    while not sink.stop.stopped:
        page = source.fetch_after(state.product, backfill.cursor, state.report.stats)
        reached = any(not _below(state, t) for t in page.trades)
        older = [t for t in page.trades if _below(state, t) and not _in_segment(backfill, t)]
        outcomes = _write_segment(sink, backfill, page, older)
        short = len(page.trades) < source.page_limit or page.next_cursor == backfill.cursor
        backfill.cursor = page.next_cursor
        if reached or short:
            _join(sink, backfill, outcomes, source.dense_ids)
            return
        sink.extend_down(outcomes, state.start_after_id, None)  # the segment's progress, low end unchanged


def _below(state: ActiveProduct, trade: RawTrade) -> bool:
    if is_derived(trade.trade_id):
        return state.derived_after is None or trade.trade_id <= state.derived_after
    return state.watermark == state.start_after_id or trade.trade_id <= state.start_after_id


def _in_segment(backfill: Backfill, trade: RawTrade) -> bool:
    """Already written by this segment (a venue whose next page starts at the last trade's
    time repeats the trades of that instant)."""
    if is_derived(trade.trade_id):
        return backfill.derived_through_id is not None and trade.trade_id <= backfill.derived_through_id
    return backfill.through_id is not None and trade.trade_id <= backfill.through_id


def _write_segment(sink: ProductSink, backfill: Backfill, page: CursorPage,
                   older: list[RawTrade]) -> list[ChunkOutcome]:
    outcomes = []
    for derived, group in groupby(older, key=lambda t: is_derived(t.trade_id)):
        trades = list(group)
        first, last = trades[0].trade_id, trades[-1].trade_id
        if derived:
            lo = backfill.derived_through_id if backfill.derived_through_id is not None else first - 1
            backfill.derived_after_id = lo if backfill.derived_after_id is None else backfill.derived_after_id
            backfill.derived_through_id = last
            missing: list[tuple[int, int]] = []
        else:
            lo = backfill.through_id if backfill.through_id is not None else first - 1
            backfill.after_id = lo if backfill.after_id is None else backfill.after_id
            backfill.through_id = last
            missing = RangeFetch(lo, last, trades).missing_ranges() if page.dense_ids else []
        outcome = sink.write(trades, lo, last, missing, [page.request])
        sink.note(outcome, last - lo)
        if backfill.first_trade_time is None and outcome.first_us is not None:
            backfill.first_trade_time = from_us(outcome.first_us)
        outcomes.append(outcome)
    return outcomes


def _join(sink: ProductSink, backfill: Backfill, outcomes: list[ChunkOutcome], dense: bool) -> None:
    """The segment reached the old start: it becomes the bottom of the covered interval."""
    state = sink.state
    if backfill.after_id is not None and backfill.through_id is not None:
        if state.watermark == state.start_after_id:  # no real ids were covered yet: the segment is all
            state.watermark = backfill.through_id
        elif dense and backfill.through_id < state.start_after_id:  # ids between the two the exchange skipped
            outcomes.append(ChunkOutcome(None, 0, None, None, None, None,
                                         [(backfill.through_id + 1, state.start_after_id)]))
        low = backfill.after_id
    else:
        low = state.start_after_id
    if backfill.derived_after_id is not None:
        state.derived_after = backfill.derived_after_id
        if state.derived_through is None:
            state.derived_through = backfill.derived_through_id
    state.backfill = None
    if backfill.since is not None:
        since, covered = to_us(backfill.since), state.covered_since_us
        state.covered_since_us = since if covered is None else min(covered, since)
    first = backfill.first_trade_time
    sink.extend_down(outcomes, low, None if first is None else to_us(first))
