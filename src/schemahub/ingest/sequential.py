"""Cursor-paged ingestion (Kraken): one page after another, each page one raw file.

The cursor of the next page comes with each page and is stored in the checkpoint
exactly as received, together with the last trade id. Trades repeated across a page
seam are dropped by id; ids missing between two pages of a dense sequence go to the gap
log. The product is caught up when a page comes back short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemahub.infra.checkpoints import Checkpoint, Stored
from schemahub.infra.locks import Lease, LeaseKeeper
from schemahub.ingest.report import ProductReport, Status
from schemahub.ingest.run import IngestOptions, ProductRun, micros
from schemahub.sources.base import CursorPagedSource, Product, RangeFetch

if TYPE_CHECKING:
    from schemahub.ingest.engine import Ingestor


def ingest(engine: Ingestor, product: Product, lease: Lease, keeper: LeaseKeeper,
           stored: Stored[Checkpoint] | None, options: IngestOptions, item: ProductReport) -> None:
    source = engine.source
    assert isinstance(source, CursorPagedSource)
    if stored is not None and stored.value.cursor is not None:
        cp = stored.value
        known_us = None if cp.last_trade_time is None else micros(cp.last_trade_time)
        run = ProductRun(product, lease, keeper, item, stored, cp.start_after_id, cp.last_trade_id,
                         known_us, known_us or 0, cp.cursor)
        seen_any = True
    else:
        item.cold_start = True
        since = options.since_us if options.since_us is not None else engine.default_since_us()
        run = ProductRun(product, lease, keeper, item, stored, 0, 0, None, since,
                         source.start_cursor(product, since))
        seen_any = False
    item.watermark_before = item.watermark_after = run.watermark if seen_any else None
    engine.progress.product_started(item.label, None)  # a cursor gives no count ahead
    while not engine.stopping:
        requested = run.cursor
        assert requested is not None
        page = source.fetch_after(product, requested, item.stats)
        fresh = [t for t in page.trades if not seen_any or t.trade_id > run.watermark]
        if fresh:
            if not seen_any:  # the cold start: coverage begins just below the first trade
                run.start_after_id = run.watermark = fresh[0].trade_id - 1
                seen_any = True
            lo, hi = run.watermark, fresh[-1].trade_id
            missing = RangeFetch(lo, hi, fresh).missing_ranges() if page.dense_ids else []
            outcome = engine.write_raw(run, fresh, lo, hi, missing, [page.request])
            engine.note(run, outcome, hi - lo)
            engine.commit(run, [outcome], hi, cursor=page.next_cursor)
        elif seen_any and page.next_cursor != requested:
            engine.commit(run, [], run.watermark, cursor=page.next_cursor)
        if len(page.trades) < source.page_limit or page.next_cursor == requested:
            break  # a short page: caught up with the exchange
        run.cursor = page.next_cursor
    if engine.stopping:
        item.status = Status.INTERRUPTED
    elif item.trades == 0:
        item.status = Status.UP_TO_DATE

