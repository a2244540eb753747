"""Which raw files a transform takes: pure selection over listings, checkpoints and cursors.

A product's raw files are *committed* once its ingest watermark covers them (their last
trade id <= the checkpoint's ``last_trade_id``); files above it may still be replaced by
a re-run of ingest, so they wait. The table's cursor says which window of ids is already
in the table; everything committed outside that window is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemahub.raw.layout import RawKey
from schemahub.sources.base import is_derived
from schemahub.table.delta import Cursor


@dataclass(frozen=True)
class Watermark:
    """What ingest committed for a product: ids in (start_after_id, last_trade_id], and for
    rows without a real id (cursor venues), derived ids in (derived_after, derived_through]."""

    start_after_id: int
    last_trade_id: int
    derived_after: int | None = None
    derived_through: int | None = None

    @property
    def derived(self) -> Cursor | None:
        if self.derived_after is None or self.derived_through is None:
            return None
        return Cursor(self.derived_after, self.derived_through)


@dataclass
class ProductPlan:
    exchange: str
    symbol: str
    watermark: Watermark
    cursor: Cursor | None
    files: list[RawKey] = field(default_factory=list)
    skipped_quarantined: int = 0
    derived_cursor: Cursor | None = None

    @property
    def new_cursor(self) -> Cursor:
        return _widened(Cursor(self.watermark.start_after_id, self.watermark.last_trade_id), self.cursor)

    @property
    def new_derived_cursor(self) -> Cursor | None:
        committed = self.watermark.derived
        return None if committed is None else _widened(committed, self.derived_cursor)

    @property
    def changes(self) -> bool:
        return bool(self.files) or self.cursor != self.new_cursor \
            or self.derived_cursor != self.new_derived_cursor


def _widened(committed: Cursor, transformed: Cursor | None) -> Cursor:
    start = committed.from_id if transformed is None else min(committed.from_id, transformed.from_id)
    return Cursor(start, committed.through_id)


def select_files(keys: list[RawKey], watermark: Watermark, cursor: Cursor | None,
                 quarantined: set[str], derived_cursor: Cursor | None = None) -> tuple[list[RawKey], int]:
    """Committed files not yet in the table, ordered by id; and how many are quarantined.

    Derived-id files (rows that came without an id) are judged against their own ranges:
    their ids are positions, never compared with real ones.
    """
    chosen, skipped = [], 0
    for key in keys:
        derived = is_derived(key.first_id)
        real = Cursor(watermark.start_after_id, watermark.last_trade_id)
        committed = watermark.derived if derived else real
        window = derived_cursor if derived else cursor
        if committed is None or not committed.from_id < key.last_id <= committed.through_id:
            continue  # not committed by ingest (or before where this product's ingest began)
        if window is not None and key.first_id > window.from_id and key.last_id <= window.through_id:
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
