"""The way back from a quarantined raw file: release it, fetch its range again, transform it.

1. ``release``: the corrupt raw object is set aside (kept for forensics under
   ``state/quarantine/``, next to its quarantine record), removed from the raw layer, and
   its id range is recorded as a repair request (``state/repairs/``).
2. ``refetch`` (``schemahub repair``): under the product's ingest lease, each requested
   range is fetched again from the exchange and written as ordinary raw files (same
   naming, create-only); the request then lists those files.
3. the next ``transform`` takes the listed files even though they lie inside the table's
   transformed window, deduplicates them against the table, and clears the request in
   the same run (after its commit; a crash in between only means the files are read
   again and their rows dropped as duplicates).

Until the repaired rows are in the table, ``check`` counts the range as missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

from schemahub import idranges
from schemahub.errors import ConfigError, SchemahubError
from schemahub.infra.checkpoints import GapLogStore, RepairRange, RepairStore
from schemahub.infra.storage import Storage
from schemahub.ingest import archived
from schemahub.ingest.plan import plan_chunks
from schemahub.ingest.run import ChunkOutcome, ProductSink
from schemahub.raw import files
from schemahub.raw.layout import RawKey, parse_key, product_prefix
from schemahub.sources.archive import DAY_IDS, ArchiveSource
from schemahub.sources.base import (
    ArchiveOnlySource,
    CursorPagedSource,
    IdPagedSource,
    RangeFetch,
    RawTrade,
    TradeSource,
    is_derived,
)
from schemahub.timeutil import to_us
from schemahub.transform import state

log = logging.getLogger("schemahub.repair")


@dataclass(frozen=True)
class Released:
    key: str
    exchange: str
    symbol: str
    first_id: int
    last_id: int
    kept_at: str | None
    """Where the corrupt bytes were set aside (None: the file was already gone)."""


def release(storage: Storage, keys: list[str] | None) -> list[Released]:
    """Release quarantined files (``None``: all): set them aside and request their ranges again."""
    records = {q.key: q for q in state.all_quarantined(storage)}
    wanted = list(records) if keys is None else keys
    unknown = [k for k in wanted if k not in records]
    if unknown:
        raise ConfigError(f"not quarantined: {', '.join(unknown)} (see `schemahub quarantine list`)")
    released = []
    now = datetime.now(UTC)
    repairs = RepairStore(storage)
    for key in wanted:
        raw = parse_key(key)
        assert raw is not None  # quarantine records are written for raw keys only
        if is_derived(raw.first_id):
            raise ConfigError(f"{key} holds rows without trade ids (derived ids): they cannot be fetched "
                              "again by id; re-ingest the product into a new lake instead")
        data = storage.read(key)
        kept = None
        if data is not None:
            kept = state.set_aside(storage, raw, data)
            storage.delete(key)
        reason = f"released from quarantine: {records[key].reason}"

        def add(ranges: list[RepairRange], raw: RawKey = raw, reason: str = reason) -> list[RepairRange]:
            if any((r.first_id, r.last_id) == (raw.first_id, raw.last_id) for r in ranges):
                return ranges
            return [*ranges, RepairRange(first_id=raw.first_id, last_id=raw.last_id, reason=reason,
                                         requested_at=now, first_day=raw.day)]

        repairs.update(raw.exchange, raw.symbol, add)
        state.release(storage, raw)
        released.append(Released(key, raw.exchange, raw.symbol, raw.first_id, raw.last_id, kept))
        log.info("released %s: its ids %d..%d will be fetched again", key, raw.first_id, raw.last_id)
    return released


def pending(storage: Storage) -> dict[tuple[str, str], list[RepairRange]]:
    """Every product's repair ranges (requested or awaiting transform)."""
    found: dict[tuple[str, str], list[RepairRange]] = {}
    store = RepairStore(storage)
    for _, exchange, sym in store.listed():
        stored = store.load(exchange, sym)
        if stored is not None and stored.value.ranges:
            found[(exchange, sym)] = list(stored.value.ranges)
    return found


@dataclass(frozen=True)
class RepairItem:
    """One thing ``schemahub repair`` fetches (or, for ``cross_check``, can only report)."""

    exchange: str
    symbol: str
    first_id: int
    last_id: int
    kind: str
    """requested | quarantined | unexplained_gap | exchange_gap | cross_check"""
    reason: str
    key: str | None = None
    """The quarantined raw file (kind ``quarantined``)."""

    @property
    def fetches(self) -> bool:
        return self.kind != "cross_check"

    def to_dict(self) -> dict[str, object]:
        return {"exchange": self.exchange, "symbol": self.symbol, "first_id": self.first_id,
                "last_id": self.last_id, "ids": self.last_id - self.first_id + 1, "kind": self.kind,
                "reason": self.reason, "fetches": self.fetches}


@dataclass(frozen=True)
class Disagreement:
    """A certified day whose cross-check with the venue's aggregates disagrees."""

    exchange: str
    symbol: str
    day: date
    first_id: int | None
    last_id: int | None
    summary: str


def plan(storage: Storage, names: set[str], *, now: datetime, gap_wait_s: float,
         unexplained: dict[tuple[str, str], list[tuple[int, int]]],
         disagreements: list[Disagreement]) -> list[RepairItem]:
    """Everything missing for a reason repair can act on, per product, without fetching anything.

    * ranges already requested and not fetched yet;
    * quarantined raw files (released when the repair runs: set aside, fetched again);
    * ids missing from the table for no logged reason (``unexplained``, from the table);
    * ids the exchange skipped, asked once more after ``gap_wait_s`` (at once on a day whose
      cross-check disagrees); afterwards they are confirmed and never asked again;
    * days whose cross-check disagrees but no id is missing: listed, nothing to fetch.
    """
    items: list[RepairItem] = []
    taken: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for key, ranges in pending(storage).items():
        if key[0] not in names:
            continue
        for r in ranges:
            taken.setdefault(key, []).append((r.first_id, r.last_id))
            if r.fetched_at is None:
                items.append(RepairItem(*key, r.first_id, r.last_id, "requested", r.reason))
    for record in state.all_quarantined(storage):
        raw = parse_key(record.key)
        if raw is None or raw.exchange not in names or is_derived(raw.first_id):
            continue
        taken.setdefault((raw.exchange, raw.symbol), []).append((raw.first_id, raw.last_id))
        items.append(RepairItem(raw.exchange, raw.symbol, raw.first_id, raw.last_id, "quarantined",
                                f"quarantined: {record.reason}", record.key))
    for key, holes in sorted(unexplained.items()):
        if key[0] in names:
            for a, b in idranges.subtract(holes, idranges.merge(taken.get(key, []))):
                items.append(RepairItem(*key, a, b, "unexplained_gap",
                                        "missing from the table, no reason logged"))
    urgent: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for d in disagreements:
        if d.first_id is not None and d.last_id is not None:
            urgent.setdefault((d.exchange, d.symbol), []).append((d.first_id, d.last_id))
    asked: set[tuple[str, str, int, int]] = set()
    gap_logs = GapLogStore(storage)
    for _, exchange, symbol in gap_logs.listed():
        if exchange not in names:
            continue
        stored = gap_logs.load(exchange, symbol)
        for gap in stored.value.gaps if stored else []:
            if gap.confirmed_at:
                continue  # asked once more already: confirmed
            spans = urgent.get((exchange, symbol), [])
            due = gap.detected_at.timestamp() <= now.timestamp() - gap_wait_s
            if due or any(a <= gap.last_id and gap.first_id <= b for a, b in spans):
                asked.add((exchange, symbol, gap.first_id, gap.last_id))
                items.append(RepairItem(exchange, symbol, gap.first_id, gap.last_id, "exchange_gap",
                                        f"skipped by the exchange (seen {gap.detected_at:%Y-%m-%d %H:%M}); "
                                        "asked once more"))
    for d in disagreements:
        gaps = [i for i in asked if i[:2] == (d.exchange, d.symbol) and d.first_id is not None
                and d.last_id is not None and i[2] <= d.last_id and d.first_id <= i[3]]
        if not gaps and d.exchange in names:
            items.append(RepairItem(d.exchange, d.symbol, d.first_id or 0, d.last_id or 0, "cross_check",
                                    f"{d.day}: {d.summary}; no id is missing: the venue's figure differs, "
                                    "the day stays incomplete"))
    return items


def request(storage: Storage, items: list[RepairItem], now: datetime) -> None:
    """Turn planned gap items into repair ranges (quarantined files are released separately)."""
    repairs = RepairStore(storage)
    by_product: dict[tuple[str, str], list[RepairItem]] = {}
    for item in items:
        if item.kind in ("unexplained_gap", "exchange_gap"):
            by_product.setdefault((item.exchange, item.symbol), []).append(item)
    for (exchange, symbol), wanted in by_product.items():
        def add(ranges: list[RepairRange], wanted: list[RepairItem] = wanted) -> list[RepairRange]:
            known = {(r.first_id, r.last_id) for r in ranges}
            return ranges + [RepairRange(first_id=i.first_id, last_id=i.last_id, reason=i.reason,
                                         requested_at=now, kind=i.kind)  # type: ignore[arg-type]
                             for i in wanted if (i.first_id, i.last_id) not in known]

        repairs.update(exchange, symbol, add)


def refetch(source: TradeSource, sink: ProductSink, storage: Storage, gap_log: GapLogStore,
            run_id: str, archive: ArchiveSource | None = None) -> int:
    """Fetch every requested range of one product again; the trades written."""
    state_ = sink.state
    product = state_.product
    repairs = RepairStore(storage)
    stored = repairs.load(source.name, product.symbol)
    todo = [r for r in (stored.value.ranges if stored else []) if r.fetched_at is None]
    written = 0
    for wanted in todo:
        sink.stop.check()
        if isinstance(source, IdPagedSource):
            outcomes = _by_ids(source, sink, wanted)
        elif isinstance(source, ArchiveOnlySource):
            assert archive is not None, "an archive-only venue always has its archive"
            outcomes = _by_archive(source, sink, archive, wanted)
        else:
            assert isinstance(source, CursorPagedSource)
            outcomes = _by_cursor(source, sink, storage, wanted)
        missing = [gap for outcome in outcomes for gap in outcome.missing]
        now = datetime.now(UTC)
        if wanted.kind == "exchange_gap":  # asked once more: what is still absent is confirmed
            gap_log.confirm(source.name, product.symbol, wanted.first_id, wanted.last_id, missing, now)
        elif missing:
            gap_log.add(source.name, product.symbol, missing, run_id=run_id, detected_at=now)
        keys = [o.key for o in outcomes if o.key is not None]
        written += sum(o.trades for o in outcomes)

        def fetched(ranges: list[RepairRange], wanted: RepairRange = wanted,
                    keys: list[str] = keys) -> list[RepairRange]:
            same = [(r.first_id, r.last_id) == (wanted.first_id, wanted.last_id) for r in ranges]
            if not keys:  # nothing came back: nothing awaits a transform
                return [r for r, hit in zip(ranges, same, strict=True) if not hit]
            return [r.model_copy(update={"raw_keys": keys, "fetched_at": datetime.now(UTC)}) if hit else r
                    for r, hit in zip(ranges, same, strict=True)]

        repairs.update(source.name, product.symbol, fetched)
        for outcome in outcomes:
            sink.note(outcome, 0)
    return written


def _by_ids(source: IdPagedSource, sink: ProductSink, wanted: RepairRange) -> list[ChunkOutcome]:
    outcomes = []
    for chunk in plan_chunks(wanted.first_id - 1, wanted.last_id, source.page_limit):
        fetched = source.fetch_range(sink.state.product, chunk.lo, chunk.hi, sink.state.report.stats)
        outcomes.append(sink.write(fetched.trades, chunk.lo, chunk.hi, fetched.missing_ranges(),
                                   fetched.requests))
    return outcomes


def _by_archive(source: ArchiveOnlySource, sink: ProductSink, archive: ArchiveSource,
                wanted: RepairRange) -> list[ChunkOutcome]:
    """The day's file again (the ids of a day-numbered venue say which day), its coverage
    records written for the range alone."""
    dataset = archive.dataset_for(source.endpoint)
    assert dataset is not None
    day = wanted.first_day or datetime.strptime(str(wanted.first_id // DAY_IDS), "%Y%m%d").date()
    written: list[ChunkOutcome] = []

    def keep(outcomes: list[ChunkOutcome], _: int) -> None:
        written.extend(outcomes)

    job = archived.ArchiveJob(archive, dataset, "archive", source.endpoint, sink, lambda lo, hi: None, keep)
    archived.fill(job, wanted.first_id - 1, wanted.last_id, day, day)
    return written


def _by_cursor(source: CursorPagedSource, sink: ProductSink, storage: Storage,
               wanted: RepairRange) -> list[ChunkOutcome]:
    """Page forward from just before the range (the previous raw file's last trade, or the
    range's first day) and keep the trades whose ids fall in it."""
    product = sink.state.product
    lo, hi = wanted.first_id - 1, wanted.last_id
    since_us = _start_us(storage, source.name, product.symbol, wanted)
    cursor = source.start_cursor(product, max(0, since_us - 1))  # trades AT since_us included
    found: dict[int, RawTrade] = {}
    requests = []
    while True:
        sink.stop.check()
        page = source.fetch_after(product, cursor, sink.state.report.stats)
        requests.append(page.request)
        for trade in page.trades:
            if not is_derived(trade.trade_id) and lo < trade.trade_id <= hi:
                found[trade.trade_id] = trade
        real = [t.trade_id for t in page.trades if not is_derived(t.trade_id)]
        if len(page.trades) < source.page_limit or page.next_cursor == cursor or (real and max(real) >= hi):
            break
        cursor = page.next_cursor
    trades = [found[i] for i in sorted(found)]
    missing = RangeFetch(lo, hi, trades, requests).missing_ranges() if source.dense_ids else []
    return [sink.write(trades, lo, hi, missing, requests)]


def _start_us(storage: Storage, exchange: str, symbol: str, wanted: RepairRange) -> int:
    """Where the trades before ``wanted`` end: the last trade of the raw file just below it,
    or the start of the UTC day the range's own file was foldered under."""
    below: tuple[int, str] | None = None
    for info in storage.list(product_prefix(exchange, symbol)):
        key = parse_key(info.key)
        if key is None or is_derived(key.first_id):
            continue
        if key.last_id < wanted.first_id and (below is None or key.last_id > below[0]):
            below = (key.last_id, info.key)
    day = wanted.first_day
    starts = [] if day is None else [to_us(datetime(day.year, day.month, day.day, tzinfo=UTC))]
    if below is not None:
        try:
            header = files.read_header(storage.read(below[1]) or b"", below[1])
            starts.append(to_us(header.last_trade_time))
        except SchemahubError:
            pass
    if not starts:
        raise ConfigError(f"cannot find where {exchange} {symbol} ids {wanted.first_id}..{wanted.last_id} "
                          "start in time: no raw file below them")
    return max(starts)
