"""Which raw files a transform takes: pure selection over listings, checkpoints and cursors.

A product's raw files are *committed* once its ingest watermark covers them (their last
trade id <= the checkpoint's ``last_trade_id``); files above it may still be replaced by
a re-run of ingest, so they wait. The table's cursor says which window of ids is already
in the table; everything committed outside that window is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemahub.raw.layout import RawKey
from schemahub.table.delta import Cursor


@dataclass(frozen=True)
class Watermark:
    """What ingest committed for a product: ids in (start_after_id, last_trade_id]."""

    start_after_id: int
    last_trade_id: int


@dataclass
class ProductPlan:
    exchange: str
    symbol: str
    watermark: Watermark
    cursor: Cursor | None
    files: list[RawKey] = field(default_factory=list)
    skipped_quarantined: int = 0

    @property
    def new_cursor(self) -> Cursor:
        start = self.watermark.start_after_id
        if self.cursor is not None:
            start = min(start, self.cursor.from_id)
        return Cursor(start, self.watermark.last_trade_id)

    @property
    def changes(self) -> bool:
        return bool(self.files) or self.cursor != self.new_cursor


def select_files(keys: list[RawKey], watermark: Watermark, cursor: Cursor | None,
                 quarantined: set[str]) -> tuple[list[RawKey], int]:
    """Committed files not yet in the table, ordered by id; and how many are quarantined."""
    chosen, skipped = [], 0
    for key in keys:
        if not watermark.start_after_id < key.last_id <= watermark.last_trade_id:
            continue  # not committed by ingest (or before where this product's ingest began)
        if cursor is not None and key.first_id > cursor.from_id and key.last_id <= cursor.through_id:
            continue  # inside the window already transformed
        if key.key in quarantined:
            skipped += 1
            continue
        chosen.append(key)
    chosen.sort(key=lambda k: (k.first_id, k.last_id))
    return chosen, skipped


def overlap_groups(keys: list[RawKey], max_files: int) -> list[list[RawKey]]:
    """Split a product's files (sorted by first id) into read groups of about ``max_files``.

    Files whose id ranges overlap (written on different chunk grids, e.g. after a checkpoint
    was rebuilt) always land in the same group, so duplicates can be dropped within it.
    """
    groups: list[list[RawKey]] = []
    current: list[RawKey] = []
    reach = -1
    for key in keys:
        overlaps = key.first_id <= reach
        if current and len(current) >= max_files and not overlaps:
            groups.append(current)
            current = []
        current.append(key)
        reach = max(reach, key.last_id)
    if current:
        groups.append(current)
    return groups


def has_overlap(keys: list[RawKey]) -> bool:
    reach = -1
    for key in keys:
        if key.first_id <= reach:
            return True
        reach = max(reach, key.last_id)
    return False
