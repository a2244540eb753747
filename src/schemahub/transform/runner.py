"""The transform stage: committed raw files -> the unified Delta table, exactly once.

One run is one Delta commit: the new rows of every product and every product's new
cursor (see ``table.delta``) land together or not at all. Rows are deduplicated within
the run (files written on different chunk grids can overlap) and against the rows
already in the table, on (exchange, symbol, trade_id). A raw file that cannot be read
or mapped is quarantined - recorded with its reason before the commit - and every other
file is still transformed. ``rebuild`` replaces the whole table from all raw files in
one commit; readers of older versions keep working (time travel) until a vacuum.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from schemahub.errors import ArchiveError, CorruptState, SchemahubError
from schemahub.infra.checkpoints import CheckpointStore, RepairRange, RepairStore
from schemahub.infra.storage import Storage, spool_dir
from schemahub.raw import files as raw_files
from schemahub.raw.layout import SUFFIX, RawKey, parse_key, product_prefix
from schemahub.stop import StopToken
from schemahub.table.delta import Cursor, Replan, TradesTable, replanned
from schemahub.timeutil import new_run_id
from schemahub.transform import archives, engine, state
from schemahub.transform.claims import Claims
from schemahub.transform.mapping import TradeMapping, packaged
from schemahub.transform.plan import ProductPlan, Watermark, has_overlap, overlap_groups, select_files
from schemahub.transform.reader import RawFile, RawReader
from schemahub.transform.report import (
    NoProgress,
    ProductResult,
    StageProgress,
    TransformOptions,
    TransformReport,
)
from schemahub.transform.schema import SCHEMA

log = logging.getLogger("schemahub.transform")

COMMIT_ATTEMPTS = 10


def _sorted(rows: pa.Table) -> pa.Table:
    """Rows of one product by time. Raw files are read in id order, which is time order on
    the exchanges we know, so the sort is usually skipped after a cheap check."""
    times = rows["trade_ts"].combine_chunks()
    if len(times) < 2 or pc.all(pc.greater_equal(times.slice(1), times.slice(0, len(times) - 1))).as_py():
        return rows
    return rows.sort_by([("trade_ts", "ascending"), ("trade_id", "ascending")])


@dataclass(frozen=True)
class _Existing:
    """The table as it was when the run started (read before delta-rs starts writing)."""

    dataset: ds.Dataset
    stats: pa.Table


@dataclass
class _Work:
    plan: ProductPlan
    result: ProductResult
    files: list[RawFile]


class Transformer:
    def __init__(self, storage: Storage, table: TradesTable, *, run_id: str | None = None,
                 progress: StageProgress | None = None, stop: StopToken | None = None,
                 claims: Claims | None = None) -> None:
        self.storage = storage
        self.claims = claims or Claims.everything()
        self.table = table
        self.progress: StageProgress = progress or NoProgress()
        self.run_id = run_id or new_run_id()
        self.checkpoints = CheckpointStore(storage)
        self.stop = stop or StopToken()
        self.repairs = RepairStore(storage)
        self._retried: set[str] = set()
        self._repairing: set[str] = set()
        self._quarantined: dict[str, state.Quarantined] = {}
        """Files quarantined by this run, kept across re-plans after a lost commit race."""
        self._spool: Path | None = None
        """Where raw files of an object-store lake wait for DuckDB during one attempt."""

    def run(self, options: TransformOptions) -> TransformReport:
        """Rounds of (lease products, transform, commit) until nothing is left this process may take."""
        started = time.monotonic()
        report: TransformReport | None = None
        single = options.dry_run or options.rebuild
        while True:
            try:
                one = self._round(options)
            finally:
                self.claims.end_round()
            report = one if report is None else report.merged(one)
            if single or not one.products or not self.claims.more or self.stop.stopped:
                break
        report.skipped_held = sorted(f"{exchange} {symbol}" for exchange, symbol in self.claims.skipped)

        # A file quarantined in a lost attempt is skipped by the re-plan, but it is still
        # this run's finding: the report (and the exit status) must say so.
        seen = {q.key for q in report.quarantined}
        report.quarantined += [q for key, q in self._quarantined.items() if key not in seen]
        report.finished_at = datetime.now(UTC)
        report.elapsed_s = time.monotonic() - started
        return report

    def _round(self, options: TransformOptions) -> TransformReport:
        """One commit of the products this round leases, planned again after a lost race."""

        def attempt(number: int) -> TransformReport:
            report = TransformReport(self.run_id, datetime.now(UTC), options.rebuild, options.dry_run,
                                     commit_attempts=number)
            self._run_once(options, report)
            return report

        return replanned(attempt, COMMIT_ATTEMPTS, "transform")

    # -- planning ---------------------------------------------------------------------

    def _watermarks(self, report: TransformReport) -> dict[tuple[str, str], Watermark]:
        found = {}
        for _, exchange, sym in self.checkpoints.listed():
            try:
                stored = self.checkpoints.load(exchange, sym)
            except (CorruptState, SchemahubError) as exc:
                report.errors.append(f"{exchange} {sym} skipped: {exc}")
                continue
            if stored is not None:
                cp = stored.value
                found[(exchange, sym)] = Watermark(cp.start_after_id, cp.last_trade_id, cp.derived_after_id,
                                                   cp.derived_through_id)
        return found

    def _plans(self, delta: DeltaTable | None, options: TransformOptions,
               report: TransformReport) -> list[ProductPlan]:
        watermarks = self._watermarks(report)
        cursors = {} if options.rebuild else self.table.cursors(delta, watermarks)
        derived = {} if options.rebuild else self.table.cursors(delta, watermarks, derived=True)
        plans = []
        for (exchange, sym), watermark in sorted(watermarks.items()):
            cursor, derived_cursor = cursors.get((exchange, sym)), derived.get((exchange, sym))
            quarantined = state.quarantined(self.storage, exchange, sym)
            keys = self._list(exchange, sym, cursor, watermark)
            chosen, skipped = select_files(keys, watermark, cursor, set(quarantined), derived_cursor)
            if options.retry_quarantined and quarantined:
                retry = [k for k in map(parse_key, quarantined) if k is not None]
                chosen = sorted(set(chosen) | set(retry), key=lambda k: (k.first_id, k.last_id))
                skipped = 0
                self._retried.update(k.key for k in retry)
            repaired = self._repaired_files(exchange, sym)
            if repaired:  # inside the transformed window, but not in the table: take them
                chosen = sorted(set(chosen) | repaired, key=lambda k: (k.first_id, k.last_id))
            plan = ProductPlan(exchange, sym, watermark, cursor, chosen, skipped, derived_cursor)
            if plan.changes or options.rebuild:
                plans.append(plan)
        return plans

    def _repaired_files(self, exchange: str, sym: str) -> set[RawKey]:
        """Raw files ``schemahub repair`` fetched again, awaiting this transform."""
        stored = self.repairs.load(exchange, sym)
        keys = {k for r in (stored.value.ranges if stored else []) if r.fetched_at is not None
                for k in map(parse_key, r.raw_keys) if k is not None}
        self._repairing.update(k.key for k in keys)
        return keys

    def _clear_repairs(self, work: list[_Work], report: TransformReport) -> None:
        """Repair ranges whose files this run committed are done."""
        committed = {f.key for item in work for f in item.files} - {q.key for q in report.quarantined}
        products = {(item.plan.exchange, item.plan.symbol) for item in work}
        for exchange, sym in products:
            def done(ranges: list[RepairRange]) -> list[RepairRange]:
                return [r for r in ranges if r.fetched_at is None or not set(r.raw_keys) <= committed]

            self.repairs.update(exchange, sym, done)

    def _list(self, exchange: str, sym: str, cursor: Cursor | None, watermark: Watermark) -> list[RawKey]:
        prefix = product_prefix(exchange, sym)
        start_after = None
        hint = state.read_hint(self.storage, exchange, sym)
        backfill = cursor is not None and watermark.start_after_id < cursor.from_id
        if cursor is not None and hint is not None and hint.through_id <= cursor.through_id and not backfill:
            start_after = f"{prefix}date={(hint.through_day - timedelta(days=1)).isoformat()}"
        keys = []
        for info in self.storage.list(prefix, start_after=start_after):
            parsed = parse_key(info.key)
            if parsed is not None:
                keys.append(parsed)
        return keys

    def _raw_files(self, plans: list[ProductPlan], report: TransformReport,
                   dry_run: bool) -> list[_Work]:
        """Read every selected file's header (in parallel); quarantine unreadable ones."""
        flat = [(plan, key) for plan in plans for key in plan.files]
        if self.storage.read_concurrency > 1:
            with ThreadPoolExecutor(self.storage.read_concurrency) as pool:
                read = list(pool.map(lambda item: self._header(item[1]), flat))
        else:
            read = [self._header(key) for _, key in flat]
        work: dict[tuple[str, str], _Work] = {
            (p.exchange, p.symbol): _Work(p, ProductResult(p.exchange, p.symbol, cursor_before=p.cursor,
                                                           cursor_after=p.new_cursor), [])
            for p in plans}
        for file_id, ((plan, key), found) in enumerate(zip(flat, read, strict=True)):
            item = work[(plan.exchange, plan.symbol)]
            if isinstance(found, str):
                self._quarantine(key, found, report, item.result, dry_run)
                continue
            header, local = found
            where = str(local) if local is not None else self.storage.url_for(key.key)
            item.files.append(RawFile(file_id, key.key, where, key.exchange,
                                      key.symbol, header.mapping, key.first_id, key.last_id,
                                      header.fetched_at.isoformat(), header.trade_count, header.time_unit,
                                      header))
            item.result.files += 1
            item.result.raw_trades += header.trade_count
        return list(work.values())

    def _header(self, key: RawKey) -> tuple[raw_files.RawHeader, Path | None] | str:
        """The file's header, and on an object store a local copy of the same bytes: one GET
        per raw file (DuckDB then reads the copy, not the store: no HEAD, no ranged GETs)."""
        data = self.storage.read(key.key)
        if data is None:
            return "the file disappeared before it could be read"
        try:
            header = raw_files.read_header(data, key.key)
        except CorruptState as exc:
            return str(exc)
        if (header.exchange, header.symbol) != (key.exchange, key.symbol):
            return f"header says {header.exchange} {header.symbol}, the path says {key.exchange} {key.symbol}"
        local = None
        if self._spool is not None and not key.archive:
            local = self._spool / f"{uuid.uuid4().hex}{SUFFIX}"
            local.write_bytes(data)
        return header, local

    def _quarantine(self, key: RawKey, reason: str, report: TransformReport, result: ProductResult,
                    dry_run: bool) -> None:
        log.error("quarantining %s: %s", key.key, reason)
        when = datetime.now(UTC)
        record = state.Quarantined(key=key.key, reason=reason, detected_at=when, run_id=self.run_id)
        if not dry_run:
            record = state.quarantine(self.storage, key, reason, self.run_id, when)
            self._quarantined[key.key] = record
        report.quarantined.append(record)
        result.quarantined += 1

    # -- running ------------------------------------------------------------------------

    def _run_once(self, options: TransformOptions, report: TransformReport) -> None:
        with contextlib.ExitStack() as stack:
            if self.storage.access() is not None and not options.dry_run:  # an object store
                self._spool = Path(stack.enter_context(spool_dir()))
            try:
                self._transform(options, report)
            finally:
                self._spool = None

    def _transform(self, options: TransformOptions, report: TransformReport) -> None:
        self._retried, self._repairing = set(), set()
        delta = self.table.load()
        report.table_version_before = delta.version() if delta is not None else None
        plans = self.claims.choose(self._plans(delta, options, report))
        work = self._raw_files(plans, report, options.dry_run)
        report.products = [w.result for w in work]
        if options.dry_run or not work:
            report.table_version_after = report.table_version_before
            return
        if delta is None:
            delta = self.table.create()  # an empty first version: later writes are appends
        reader = RawReader(access=self.storage.access())
        self.progress.start(sum(len(w.files) for w in work))
        existing = None if options.rebuild else _Existing(delta.to_pyarrow_dataset(),
                                                          self.table.file_stats(delta))
        try:
            batches = self._batches(work, reader, existing, options, report)
            cursors = {(w.plan.exchange, w.plan.symbol): w.plan.new_cursor for w in work}
            derived = {(w.plan.exchange, w.plan.symbol): window for w in work
                       if (window := w.plan.new_derived_cursor) is not None}
            metadata = {"schemahub.run_id": self.run_id,
                        "schemahub.operation": "rebuild" if options.rebuild else "transform"}
            report.table_version_after = self.table.write(
                batches, cursors, overwrite=options.rebuild, table=delta, metadata=metadata,
                derived_cursors=derived)
        finally:
            reader.close()
        for item in work:
            self._save_hint(item)
        if self._repairing:
            self._clear_repairs(work, report)
        still_bad = {q.key for q in report.quarantined}
        for key in self._retried - still_bad:  # repaired files are in the table now
            parsed = parse_key(key)
            if parsed is not None:
                state.release(self.storage, parsed)

    def _batches(self, work: list[_Work], reader: RawReader, existing: _Existing | None,
                 options: TransformOptions, report: TransformReport) -> Iterator[pa.RecordBatch]:
        """The rows to commit, prepared one read group ahead in a background thread.

        DuckDB (reading JSON) and delta-rs (encoding Parquet) both run outside the GIL, so
        preparing the next group while the writer encodes this one uses both cores.
        """
        ready: queue.Queue[pa.Table | BaseException | None] = queue.Queue(maxsize=2)
        done = threading.Event()

        def hand_over(item: pa.Table | BaseException | None) -> bool:
            """Queue ``item`` unless the consumer is gone (a full queue never blocks for good)."""
            while not done.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for table in self._tables(work, reader, existing, options, report):
                    if not hand_over(table):
                        return
                hand_over(None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                hand_over(exc)

        worker = threading.Thread(target=produce, name="transform-read", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    item = ready.get(timeout=0.1)
                except queue.Empty:
                    self.stop.check()  # a stop before the commit: nothing is committed
                    continue
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                self.stop.check()
                yield from item.to_batches(max_chunksize=256 * 1024)
        finally:
            done.set()
            worker.join()

    def _tables(self, work: list[_Work], reader: RawReader, existing: _Existing | None,
                options: TransformOptions, report: TransformReport) -> Iterator[pa.Table]:
        for item in work:
            by_id = {f.key: f for f in item.files}
            for endpoint in sorted({f.endpoint for f in item.files}):
                mapping = packaged(item.plan.exchange, endpoint)
                keys = [k for k in item.plan.files if k.key in by_id and by_id[k.key].endpoint == endpoint]
                if mapping.record == "csv":
                    for key in keys:
                        yield from self._archive_rows(by_id[key.key], mapping, existing, item, report,
                                                      options.dry_run)
                    continue
                for group in overlap_groups(keys, options.group_files):
                    files = [by_id[k.key] for k in group]
                    rows = self._rows(files, mapping, reader, report, item.result, options.dry_run)
                    self.progress.advance(len(files), rows.num_rows)
                    if rows.num_rows == 0:
                        continue
                    if has_overlap(group):
                        rows, dropped = engine.unique_trades(rows)
                        item.result.duplicates_dropped += dropped
                    if existing is not None:
                        rows = self._new_only(rows, existing, item)
                    item.result.rows_written += rows.num_rows
                    yield _sorted(rows)

    def _archive_rows(self, raw_file: RawFile, mapping: TradeMapping, existing: _Existing | None,
                      item: _Work, report: TransformReport, dry_run: bool) -> Iterator[pa.Table]:
        """A bulk-archive coverage record's rows, a table at a time, straight from its zip.

        Rows are on their way to the table before the whole file is read; a bad row found
        after that quarantines the record and re-plans the run (nothing was committed).
        """
        header = raw_file.header
        assert header is not None
        distinct, sent = 0, False
        try:
            for part in archives.applied(self.storage, raw_file, mapping):
                rows = part.table
                distinct += rows.num_rows
                self.progress.advance(0, rows.num_rows)
                if existing is not None:
                    rows = self._new_only(rows, existing, item)
                item.result.rows_written += rows.num_rows
                sent = True
                yield _sorted(rows)
            archives.check_count(header, distinct)
        except ArchiveError as exc:
            self._quarantine_file(raw_file, str(exc), report, item.result, dry_run)
            if sent:
                raise Replan(f"{raw_file.key} was quarantined after some of its rows were read") from None
            return
        self.progress.advance(1, 0)

    def _rows(self, files: list[RawFile], mapping: TradeMapping, reader: RawReader, report: TransformReport,
              result: ProductResult, dry_run: bool) -> pa.Table:
        raw, unreadable = reader.read_isolating(files, mapping)
        by_id = {f.file_id: f for f in files}
        for file_id, reason in unreadable.items():
            self._quarantine_file(by_id[file_id], reason, report, result, dry_run)
        if raw.num_columns == 0:
            return SCHEMA.empty_table()
        applied = engine.apply(mapping, raw)
        for file_id, rejected in applied.rejected.items():
            raw_file = by_id[file_id]
            self._quarantine_file(raw_file, self._explain(raw_file, mapping, reader, rejected),
                                  report, result, dry_run)
        return applied.table

    def _explain(self, raw_file: RawFile, mapping: TradeMapping, reader: RawReader,
                 rejected: engine.Rejected) -> str:
        """The rejection with its line number, from a read of that one file (in file order)."""
        alone = engine.apply(mapping, reader.read([raw_file], mapping)).rejected.get(raw_file.file_id)
        first = alone or rejected
        return first.describe(line=first.row + 2 if alone else None)

    def _quarantine_file(self, raw_file: RawFile, reason: str, report: TransformReport,
                         result: ProductResult, dry_run: bool) -> None:
        key = parse_key(raw_file.key)
        assert key is not None
        self._quarantine(key, reason, report, result, dry_run)

    def _new_only(self, rows: pa.Table, table: _Existing, item: _Work) -> pa.Table:
        """Drop rows whose key is already in the table (an insert-only merge)."""
        times = rows["trade_ts"]
        first, last = pc.min(times).as_py(), pc.max(times).as_py()
        if not self.table.may_hold(table.stats, item.plan.exchange, item.plan.symbol, first, last):
            return rows  # the usual incremental case: new trades after everything in the table
        existing = self.table.existing_ids(table.dataset, item.plan.exchange, item.plan.symbol, first, last)
        if len(existing) == 0:
            return rows
        fresh = rows.filter(pc.invert(pc.is_in(rows["trade_id"], value_set=existing)))
        item.result.duplicates_dropped += rows.num_rows - fresh.num_rows
        return fresh

    def _save_hint(self, item: _Work) -> None:
        days = [key.day for key in item.plan.files]
        if not item.files or not days:
            return
        state.write_hint(self.storage, item.plan.exchange, item.plan.symbol,
                         state.ListingHint(through_id=item.plan.new_cursor.through_id, through_day=max(days)))

