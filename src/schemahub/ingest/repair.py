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
from datetime import UTC, datetime

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
        if missing:
            gap_log.add(source.name, product.symbol, missing, run_id=run_id, detected_at=datetime.now(UTC))
        keys = [o.key for o in outcomes if o.key is not None]
        written += sum(o.trades for o in outcomes)

        def fetched(ranges: list[RepairRange], wanted: RepairRange = wanted,
                    keys: list[str] = keys) -> list[RepairRange]:
            return [r.model_copy(update={"raw_keys": keys, "fetched_at": datetime.now(UTC)})
                    if (r.first_id, r.last_id) == (wanted.first_id, wanted.last_id) else r for r in ranges]

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
