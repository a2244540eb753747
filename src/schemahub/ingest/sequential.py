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

from schemahub.ingest.report import Status
from schemahub.ingest.run import ActiveProduct, ChunkOutcome, ProductSink
from schemahub.sources.base import CursorPage, CursorPagedSource, RangeFetch, RawTrade, is_derived


def _is_new(state: ActiveProduct, trade: RawTrade, seen_any: bool) -> bool:
    if not seen_any:
        return True
    if is_derived(trade.trade_id):
        return state.derived_through is None or trade.trade_id > state.derived_through
    return state.watermark == state.start_after_id or trade.trade_id > state.watermark


def ingest(source: CursorPagedSource, sink: ProductSink) -> None:
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
