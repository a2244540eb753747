"""Per-product ingest state: the watermark checkpoint and the gap log.

Both are small JSON objects replaced by compare-and-swap (``Storage.replace_if``), so a
stale writer can neither move a watermark backwards nor overwrite another writer's
progress: it gets ``CommitConflict`` instead.

* ``state/checkpoints/<exchange>/<symbol>.json`` - the last trade id up to which every
  trade is in durable raw files (and that trade's time).
* ``state/gaps/<exchange>/<symbol>.json`` - ids the exchange skipped. It is written
  *before* the checkpoint that covers them, so the watermark never passes an
  unrecorded gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from schemahub.errors import CommitConflict, CorruptState
from schemahub.identifiers import exchange_name, symbol
from schemahub.infra.storage import Storage

M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backfill(_Model):
    """An extension of the covered interval below its low end that has not reached it yet.

    Dense-id venues extend down chunk by chunk, the low end moving over contiguous work:
    only ``target_after_id`` (where the extension ends) is kept, so a re-run resumes on the
    same grid. From bulk archives (files by day, in time order), and on cursor venues, the
    extension is a *segment* growing upwards from the new start towards the old one: what
    it covered so far (``after_id``/``through_id``, derived ids, the next cursor) is kept,
    and joined to the interval when it reaches the old start.

    Mutable (unlike the checkpoint around it): the run updates it as pages come in and
    saves a new checkpoint with it at each commit.
    """

    model_config = ConfigDict(extra="forbid", frozen=False)

    target_after_id: int | None = None
    since: datetime | None = None
    cursor: str | None = None
    after_id: int | None = None
    through_id: int | None = None
    derived_after_id: int | None = None
    derived_through_id: int | None = None
    first_trade_time: datetime | None = None
    """The segment's first trade: the interval's first once it joins."""
    through_time: datetime | None = None
    """The segment's last trade so far (where a resumed archive backfill picks up)."""


class Checkpoint(_Model):
    format: str = "schemahub.checkpoint/v1"
    exchange: str
    symbol: str
    endpoint: str = "trades"
    """The API the ids come from; a product never switches (aggregate ids are not trade ids)."""
    start_after_id: int
    """The low end: every trade above it is covered (moves down when history is extended)."""
    first_trade_time: datetime | None = None
    """The first covered trade's time (None in checkpoints written before it was recorded)."""
    covered_since: datetime | None = None
    """The earliest ``--since`` this product's history was ingested from: no trade between it
    and the first covered trade, so a later ``--since`` at or after it asks for nothing."""
    last_trade_id: int
    """Every trade with an id in (start_after_id, last_trade_id] is in raw files or the gap log
    (an empty range, start == last, until the first trade with a real id)."""
    last_trade_time: datetime | None
    cursor: str | None = None
    """For cursor-paged exchanges (Kraken): where the next page starts, exactly as received."""
    derived_after_id: int | None = None
    derived_through_id: int | None = None
    """Cursor venues whose old rows come without a trade id (Kraken): those rows' ids are
    derived from their position (>= 10^18, never compared with real ids), and covered in
    (derived_after_id, derived_through_id]. None: no such rows."""
    backfill: Backfill | None = None
    """An extension below the low end still under way (``ingest --since`` before it)."""
    updated_at: datetime
    run_id: str
    lease_token: int


class Gap(_Model):
    first_id: int
    last_id: int
    detected_at: datetime
    run_id: str
    confirmed_at: list[datetime] = []
    """When ``repair`` asked the exchange for these ids again and they were still absent."""


class GapLog(_Model):
    format: str = "schemahub.gaps/v1"
    exchange: str
    symbol: str
    gaps: list[Gap]


@dataclass(frozen=True)
class Stored(Generic[M]):
    value: M
    version: str


_CHECKPOINTS = "state/checkpoints/"


def checkpoint_key(exchange: str, sym: str) -> str:
    return f"{_CHECKPOINTS}{exchange_name(exchange)}/{symbol(sym)}.json"


_GAPS = "state/gaps/"


def gap_log_key(exchange: str, sym: str) -> str:
    return f"{_GAPS}{exchange_name(exchange)}/{symbol(sym)}.json"


def _load(storage: Storage, key: str, model: type[M], what: str, recovery: str) -> Stored[M] | None:
    found = storage.read_versioned(key)
    if found is None:
        return None
    try:
        value = model.model_validate(orjson.loads(found.data))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        reason = str(exc).splitlines()[0]
        where = storage.url_for(key)
        raise CorruptState(f"{what} {where} is corrupt ({reason}). {recovery}", path=where) from exc
    return Stored(value, found.version)


def _save(storage: Storage, key: str, value: BaseModel, previous: Stored[M] | None) -> str:
    return storage.replace_if(key, orjson.dumps(value.model_dump(mode="json"), option=orjson.OPT_INDENT_2),
                              None if previous is None else previous.version)


class CheckpointStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def listed(self) -> Iterator[tuple[str, str, str]]:
        """``(key, exchange, symbol)`` of every checkpoint file in the lake, in key order."""
        for info in self.storage.list(_CHECKPOINTS):
            exchange, _, name = info.key.removeprefix(_CHECKPOINTS).partition("/")
            yield info.key, exchange, name.removesuffix(".json")

    def load(self, exchange: str, sym: str) -> Stored[Checkpoint] | None:
        key = checkpoint_key(exchange, sym)
        return _load(self.storage, key, Checkpoint, "checkpoint",
                     "To recover, run `schemahub checkpoints rebuild --exchange "
                     f"{exchange} --products {sym}` (derives the watermark from the raw files), "
                     "or move the file aside and re-run ingest with --since.")

    def commit(self, new: Checkpoint, previous: Stored[Checkpoint] | None) -> Stored[Checkpoint]:
        """Replace ``previous`` with ``new``; refuse to go backwards or over someone else's write."""
        if previous is not None and new.last_trade_id < previous.value.last_trade_id \
                and previous.value.last_trade_id > previous.value.start_after_id:
            raise CommitConflict(
                f"refusing to move the {new.exchange} {new.symbol} watermark backwards "
                f"({previous.value.last_trade_id} -> {new.last_trade_id})")
        key = checkpoint_key(new.exchange, new.symbol)
        return Stored(new, _save(self.storage, key, new, previous))


class GapLogStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def listed(self) -> Iterator[tuple[str, str, str]]:
        """(key, exchange, symbol) of every gap log."""
        for info in self.storage.list(_GAPS):
            exchange, _, name = info.key.removeprefix(_GAPS).partition("/")
            yield info.key, exchange, name.removesuffix(".json")

    def load(self, exchange: str, sym: str) -> Stored[GapLog] | None:
        return _load(self.storage, gap_log_key(exchange, sym), GapLog, "gap log",
                     "Move it aside; the next ingest of an already-covered range cannot "
                     "re-detect old gaps, so restore it from a backup if you need them.")

    def confirm(self, exchange: str, sym: str, first_id: int, last_id: int,
                still_missing: list[tuple[int, int]], at: datetime) -> None:
        """The exchange was asked again for ``first_id..last_id``: the logged gaps there shrink to
        what is ``still_missing`` (each keeps its history and gains a confirmation); ids it now
        served are no longer gaps."""
        previous = self.load(exchange, sym)
        if previous is None:
            return
        kept, touched = [], []
        for gap in previous.value.gaps:
            if gap.first_id > last_id or gap.last_id < first_id:
                kept.append(gap)
                continue
            touched.append(gap)
            if gap.first_id < first_id:  # the parts outside what was asked stay as they were
                kept.append(gap.model_copy(update={"last_id": first_id - 1}))
            if gap.last_id > last_id:
                kept.append(gap.model_copy(update={"first_id": last_id + 1}))
        confirmed = []
        for a, b in still_missing:
            origin = next((g for g in touched if g.first_id <= b and g.last_id >= a), None)
            if origin is None:
                continue  # not a logged gap: the caller logs new ranges with ``add``
            confirmed.append(origin.model_copy(update={"first_id": a, "last_id": b,
                                                       "confirmed_at": [*origin.confirmed_at, at]}))
        log = GapLog(exchange=exchange, symbol=sym, gaps=sorted(kept + confirmed, key=lambda g: g.first_id))
        _save(self.storage, gap_log_key(exchange, sym), log, previous)

    def add(self, exchange: str, sym: str, ranges: list[tuple[int, int]], *, run_id: str,
            detected_at: datetime) -> None:
        """Record skipped id ranges (idempotent: ranges already logged are not repeated)."""
        previous = self.load(exchange, sym)
        gaps = list(previous.value.gaps) if previous else []
        known = {(g.first_id, g.last_id) for g in gaps}
        fresh = [Gap(first_id=a, last_id=b, detected_at=detected_at, run_id=run_id)
                 for a, b in ranges if (a, b) not in known]
        if not fresh:
            return
        log = GapLog(exchange=exchange, symbol=sym,
                     gaps=sorted(gaps + fresh, key=lambda g: g.first_id))
        _save(self.storage, gap_log_key(exchange, sym), log, previous)


RepairKind = Literal["quarantined", "unexplained_gap", "exchange_gap"]


class RepairRange(_Model):
    """Ids of a product to fetch again (a released quarantined file, later: unexplained gaps).

    Requested -> fetched (``raw_keys`` written by the repair, awaiting transform) -> done
    (removed once a transform committed those files).
    """

    first_id: int
    last_id: int
    reason: str
    requested_at: datetime
    raw_keys: list[str] = []
    fetched_at: datetime | None = None
    first_day: date | None = None
    """The UTC day the range's trades start (cursor venues re-fetch from there)."""
    kind: RepairKind = "quarantined"
    """Why: a released quarantined file, ids missing for no logged reason, or ids the exchange
    skipped asked once more (what is still absent then is confirmed in the gap log)."""


class RepairLog(_Model):
    format: str = "schemahub.repairs/v1"
    exchange: str
    symbol: str
    ranges: list[RepairRange]


_REPAIRS = "state/repairs/"


def repair_key(exchange: str, sym: str) -> str:
    return f"{_REPAIRS}{exchange_name(exchange)}/{symbol(sym)}.json"


class RepairStore:
    """``state/repairs/<exchange>/<symbol>.json``: ranges to re-fetch and files to re-transform."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def listed(self) -> Iterator[tuple[str, str, str]]:
        for info in self.storage.list(_REPAIRS):
            exchange, _, name = info.key.removeprefix(_REPAIRS).partition("/")
            yield info.key, exchange, name.removesuffix(".json")

    def load(self, exchange: str, sym: str) -> Stored[RepairLog] | None:
        return _load(self.storage, repair_key(exchange, sym), RepairLog, "repair log",
                     "Move it aside and release the quarantined files again "
                     "(`schemahub quarantine release`).")

    def update(self, exchange: str, sym: str,
               change: Callable[[list[RepairRange]], list[RepairRange]]) -> None:
        """Apply ``change`` to the product's ranges by compare-and-swap (retried on a race)."""
        for _ in range(10):
            previous = self.load(exchange, sym)
            ranges = change(list(previous.value.ranges) if previous else [])
            if previous is None and not ranges:
                return
            try:  # an emptied log stays (empty): deleting it could drop a range added meanwhile
                _save(self.storage, repair_key(exchange, sym), RepairLog(exchange=exchange, symbol=sym,
                                                                         ranges=ranges), previous)
                return
            except CommitConflict:
                continue
        raise CommitConflict(f"{repair_key(exchange, sym)} kept changing under us")
