"""Re-derive a product's checkpoint from its raw files (after a checkpoint was lost or corrupted).

Every raw file's header says which id range it covers, and the gap log which ids the
exchange skipped (a stretch of skipped ids has no raw file). Starting at the lowest
covered id, the watermark extends over the union of both for as long as it has no hole;
that is the same watermark ingestion would have committed. On a venue whose days number
their own rows (Bybit), the step to a day's first id is a seam between files, not a hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from schemahub.errors import CorruptState
from schemahub.infra.checkpoints import Checkpoint, GapLogStore, checkpoint_key
from schemahub.infra.storage import Storage
from schemahub.raw import files
from schemahub.raw.layout import parse_key, product_prefix
from schemahub.sources.archive import DAY_IDS
from schemahub.sources.base import CursorPagedSource, TradeSource, is_derived
from schemahub.timeutil import to_us


@dataclass(frozen=True)
class Rebuilt:
    checkpoint: Checkpoint | None
    files: int
    unreadable: list[str]
    """Raw files whose header could not be read (they do not count as coverage)."""


def derive_checkpoint(storage: Storage, exchange: str, symbol: str, run_id: str,
                      source: type[TradeSource] | None = None) -> Rebuilt:
    headers: list[files.RawHeader] = []
    unreadable: list[str] = []
    for info in storage.list(product_prefix(exchange, symbol)):
        if parse_key(info.key) is None:
            continue
        data = storage.read(info.key)
        try:
            headers.append(files.read_header(data or b"", storage.url_for(info.key)))
        except CorruptState:
            unreadable.append(info.key)
    real = [h for h in headers if not is_derived(h.first_trade_id)]
    derived = [h for h in headers if is_derived(h.first_trade_id)]
    if not real and not derived:
        return Rebuilt(None, 0, unreadable)
    endpoints = {h.endpoint for h in headers}
    if len(endpoints) > 1:
        raise CorruptState(f"the raw files of {exchange} {symbol} come from several endpoints "
                           f"({', '.join(sorted(endpoints))}): move the foreign ones aside first",
                           path=symbol)
    skipped = GapLogStore(storage).load(exchange, symbol)
    gaps = [] if skipped is None else [(g.first_id - 1, g.last_id) for g in skipped.value.gaps]
    day_seams = source is not None and source.paging == "archive"
    start, watermark, last_time, first_time = _contiguous(real, gaps, day_seams)
    derived_after, derived_through, derived_time, derived_first = _contiguous(derived, [])
    newest = max((t for t in (last_time, derived_time) if t is not None), default=None)
    cursor = None
    if newest is not None and source is not None and issubclass(source, CursorPagedSource):
        # Cursor venues resume just before the newest covered trade (a repeat is dropped by id).
        cursor = source.cursor_at(to_us(newest) - 1)
    elif newest is not None and day_seams:
        cursor = newest.date().isoformat()  # that day's file again (what is covered is skipped)
    checkpoint = Checkpoint(
        exchange=exchange, symbol=symbol, endpoint=endpoints.pop(), start_after_id=start,
        first_trade_time=derived_first or first_time,
        last_trade_id=watermark, last_trade_time=last_time or derived_time,
        cursor=cursor,
        derived_after_id=derived_after if derived else None,
        derived_through_id=derived_through if derived else None,
        updated_at=datetime.now(UTC), run_id=run_id, lease_token=0)
    return Rebuilt(checkpoint, len(headers), unreadable)


def _contiguous(headers: list[files.RawHeader], gaps: list[tuple[int, int]],
                day_seams: bool = False) -> tuple[int, int, datetime | None, datetime | None]:
    """(start, end, time of the end, time of the first trade) of the contiguous coverage from
    the lowest covered id; ``gaps`` - (after, through] ranges the exchange skipped - bridge
    the files they lie between."""
    if not headers:
        return 0, 0, None, None
    spans = sorted([(h.covers_after_id, h.covers_through_id, h) for h in headers]
                   + [(lo, hi, None) for lo, hi in gaps], key=lambda s: (s[0], s[1]))
    first = min(headers, key=lambda h: h.covers_after_id)
    start = watermark = first.covers_after_id
    last_time = None
    for lo, hi, header in spans:
        if hi <= start:
            continue  # a gap below the first file
        if lo > watermark and not (day_seams and lo % DAY_IDS == 0):
            break  # a hole: nothing beyond it is contiguous
        if hi > watermark:
            watermark = hi
            last_time = header.last_trade_time if header is not None else last_time
    return start, watermark, last_time, first.first_trade_time


def write_checkpoint(storage: Storage, checkpoint: Checkpoint) -> str:
    """Replace the checkpoint unconditionally (the caller holds the product's lease)."""
    key = checkpoint_key(checkpoint.exchange, checkpoint.symbol)
    storage.write(key, orjson.dumps(checkpoint.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    return storage.url_for(key)
