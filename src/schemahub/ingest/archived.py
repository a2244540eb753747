"""Ingesting from a venue's bulk archive, with REST for what the files leave out.

``fill`` covers the ids after ``after_id`` (up to ``until_id``) from the archive files of
a span of days, in time order:

1. files are planned as whole months where a month lies inside the span, days around
   them; a month that is not published is tried again as its days; a day that is not
   published is skipped (the ids it would have held are a seam, see 3);
2. a few files are downloaded ahead, each verified against the venue's checksum and
   inspected (ids, order, time unit) in the spool before anything is stored;
3. files are then committed one at a time, in order. Ids between the last covered one
   and the file's first (a seam: an unpublished day, or an id jump between files), and
   ids the file itself leaves out, are fetched from REST; only what REST does not have
   either goes to the gap log. The zip is stored verbatim, then one coverage record per
   stretch of ids it covers, then the watermark moves: a crash at any point leaves
   nothing half-written, and a re-run writes the same keys again.

A file whose checksum never matches, or whose CSV is not what the venue publishes, is
not stored: in ``auto`` mode its ids come from REST instead (the next file's first id
bounds the seam), in ``archive`` mode the product fails with the file named.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from schemahub.errors import ArchiveError, Interrupted, SchemahubError
from schemahub.ingest.run import ChunkOutcome, ProductSink, SourceMode
from schemahub.raw import files
from schemahub.sources.archive import (
    ArchiveSource,
    CsvFacts,
    CsvLayout,
    Fetched,
    Period,
    inspect,
    lookup_times,
    plan_periods,
)
from schemahub.sources.base import Product
from schemahub.timeutil import from_us

log = logging.getLogger("schemahub.ingest")

PREFETCH = 2
"""Files downloaded ahead of the one being committed (bandwidth, bounded spool space)."""


@dataclass
class Segment:
    """One stretch of a file's ids that a coverage record covers: (after_id, through_id]."""

    after_id: int
    through_id: int
    first_id: int
    last_id: int
    trades: int


@dataclass
class Downloaded:
    """A verified, inspected file waiting in the spool (its spool entry closes on ``release``)."""

    fetched: Fetched
    facts: CsvFacts
    spool: contextlib.ExitStack = field(repr=False)

    def release(self) -> None:
        self.spool.close()


@dataclass
class _Outcome:
    period: Period
    downloaded: Downloaded | None = None
    error: SchemahubError | None = None


RestFill = Callable[[int, int], None]
"""Fetch ids (lo, hi] from REST and commit them (the seam between files, or a hole in one)."""
Commit = Callable[[list[ChunkOutcome], int], None]
FileDone = Callable[[Period, int], None]
"""A file was taken whole (its ids covered through the second argument)."""


@dataclass(frozen=True)
class ArchiveJob:
    archive: ArchiveSource
    dataset: str
    mode: SourceMode
    endpoint: str
    """The REST endpoint whose ids the archive dataset shares (recorded in coverage records)."""
    sink: ProductSink
    rest_fill: RestFill
    commit: Commit
    file_done: FileDone | None = None


def fill(job: ArchiveJob, after_id: int, until_id: int | None, first_day: date, last_day: date,
         days: set[date] | None = None) -> int:
    """Cover ids after ``after_id`` from the archive files of [first_day, last_day] (only ``days``
    when the host listed them); returns the last id covered (``after_id`` when none was published)."""
    sink = job.sink
    if job.archive.layouts[job.dataset].utc_offset_h > 0:
        last_day += timedelta(days=1)  # the venue's next day holds the end of this UTC day
    planned = plan_periods(first_day, last_day, monthly=job.archive.monthly)
    pending = deque(p for p in planned if days is None or p.start in days)
    cursor = after_id
    pool = ThreadPoolExecutor(PREFETCH, thread_name_prefix=f"archive-{sink.state.product.symbol}")
    inflight: dict[Period, Future[_Outcome]] = {}
    try:
        while pending and not sink.stop.stopped and (until_id is None or cursor < until_id):
            for period in list(pending)[:PREFETCH + 1]:
                if period not in inflight:
                    inflight[period] = pool.submit(_download, job, period)
            period = pending.popleft()
            outcome = inflight.pop(period).result()
            if outcome.error is not None:
                if _broken(job, period, outcome.error):
                    continue
                break  # the archive host cannot be reached: REST carries on from the cursor
            if outcome.downloaded is None:
                if period.kind == "monthly":  # not (yet) published as a month: try its days
                    pending.extendleft(reversed(period.days()))
                continue
            try:
                cursor = _commit_file(job, outcome.downloaded, cursor, until_id)
            finally:
                outcome.downloaded.release()
            if job.file_done is not None and not sink.stop.stopped:
                job.file_done(period, cursor)
    finally:
        for future in inflight.values():
            future.cancel()
        pool.shutdown(wait=True)
        for future in inflight.values():  # downloads that finished while we stopped
            if future.done() and not future.cancelled() and (got := future.result().downloaded):
                got.release()
    return cursor


def _download(job: ArchiveJob, period: Period) -> _Outcome:
    # Without a published checksum a damaged transfer only shows at inspection (a CRC or a
    # parse error): such a file is fetched once more before it counts as broken.
    attempts = 1 if job.archive.checksums else 2
    for attempt in range(1, attempts + 1):
        outcome = _download_once(job, period)
        if not isinstance(outcome.error, ArchiveError) or attempt == attempts:
            return outcome
        log.info("%s: archive file for %s failed inspection (%s); fetching it again",
                 job.sink.state.product.symbol, period.label, outcome.error)
    raise AssertionError("unreachable")


def _download_once(job: ArchiveJob, period: Period) -> _Outcome:
    sink = job.sink
    spool = contextlib.ExitStack()
    try:
        path: Path = spool.enter_context(sink.spool())
        fetched = job.archive.fetch(sink.state.product, job.dataset, period, path,
                                    sink.state.report.stats, on_bytes=sink.downloaded)
        if fetched is None:
            spool.close()
            return _Outcome(period)
        facts = inspect(fetched.path, fetched.filename, job.archive.layouts[job.dataset], period,
                        job.archive.id_base(period))
        return _Outcome(period, Downloaded(fetched, facts, spool))
    except SchemahubError as exc:
        spool.close()
        return _Outcome(period, error=exc)
    except BaseException:
        spool.close()
        raise


def _broken(job: ArchiveJob, period: Period, error: SchemahubError) -> bool:
    """In ``auto`` mode, REST covers what the archive cannot give: a file that cannot be trusted
    (True: go on with the next file), or every file once the host cannot be reached (False).
    In ``archive`` mode (and on a stop request) the error stands."""
    if job.mode == "archive" or isinstance(error, Interrupted):
        raise error
    item = job.sink.state.report
    if isinstance(error, ArchiveError):
        item.archive_fallbacks.append(f"{period.label}: {error}")
        log.warning("%s %s: archive file for %s not used, its trades come from REST: %s", item.exchange,
                    job.sink.state.product.symbol, period.label, error)
        return True
    item.archive_fallbacks.append(f"archive host: {error}")
    log.warning("%s %s: the archive host cannot be reached, trades come from REST: %s", item.exchange,
                job.sink.state.product.symbol, error)
    return False


def _commit_file(job: ArchiveJob, got: Downloaded, cursor: int, until_id: int | None) -> int:
    facts = got.facts
    if facts.first_id is None or facts.last_id is None or facts.last_id <= cursor:
        return cursor  # nothing after what is covered (an empty day, or the day of the watermark)
    if facts.first_id > cursor + 1:  # a seam: ids between the files (or an unpublished day)
        job.rest_fill(cursor, facts.first_id - 1)
        cursor = facts.first_id - 1
    end = facts.last_id if until_id is None else min(facts.last_id, until_id)
    stored_zip: str | None = None
    for segment in segments(facts, cursor, end):
        if segment.after_id > cursor:  # ids the file leaves out: REST has them, or nobody does
            job.rest_fill(cursor, segment.after_id)
        stored_zip = stored_zip or job.sink.store_archive(got.fetched)
        layout, id_base = job.archive.layouts[job.dataset], job.archive.id_base(got.fetched.period)
        times = segment_times(layout, got.fetched, facts, segment, id_base)
        header = coverage_header(got.fetched, facts, stored_zip, segment,
                                 exchange=job.sink.state.report.exchange, product=job.sink.state.product,
                                 endpoint=job.endpoint,
                                 mapping=job.archive.mappings[job.dataset], times=times,
                                 writer=job.sink.writer(), id_base=id_base,
                                 named_columns=layout.named_columns)
        outcome = job.sink.write_coverage(header)
        job.sink.note(outcome, segment.through_id - segment.after_id)
        job.commit([outcome], segment.through_id)
        cursor = segment.through_id
    return cursor


def segments(facts: CsvFacts, after_id: int, through_id: int) -> Iterator[Segment]:
    """The stretches of (after_id, through_id] the file has, split around the ids it leaves out."""
    assert facts.first_id is not None and facts.last_id is not None
    lo = max(after_id, facts.first_id - 1)
    for a, b in facts.missing:
        if b <= lo:
            continue
        if a > through_id:
            break
        if a - 1 > lo:
            yield _segment(lo, a - 1)
        lo = min(b, through_id)
    if through_id > lo:
        yield _segment(lo, min(through_id, facts.last_id))


def _segment(after_id: int, through_id: int) -> Segment:
    # Inside a stretch every id is present (the file's holes are between stretches).
    return Segment(after_id, through_id, after_id + 1, through_id, through_id - after_id)


def coverage_header(fetched: Fetched, facts: CsvFacts, zip_key: str, segment: Segment, *, exchange: str,
                    product: Product, endpoint: str, mapping: str, times: dict[int, int],
                    writer: files.WriterMeta, id_base: int = 0,
                    named_columns: bool = False) -> files.RawHeader:
    """The coverage record of one stretch of a stored archive file."""
    missing = [(max(a, segment.after_id + 1), min(b, segment.through_id)) for a, b in facts.missing
               if a <= segment.through_id and b > segment.after_id]
    return files.RawHeader(
        exchange=exchange, symbol=product.symbol, native_id=product.native_id, endpoint=endpoint,
        time_unit=facts.time_unit, covers_after_id=segment.after_id, covers_through_id=segment.through_id,
        first_trade_id=segment.first_id, last_trade_id=segment.last_id, trade_count=segment.trades,
        first_trade_time=from_us(times[segment.first_id]), last_trade_time=from_us(times[segment.last_id]),
        missing_ids=missing, fetched_at=fetched.fetched_at, requests=[], writer=writer,
        archive=files.ArchiveRef(
            key=zip_key, url=fetched.url, filename=fetched.filename, sha256=fetched.sha256, size=fetched.size,
            dataset=fetched.dataset, mapping=mapping, period=fetched.period.label, header_row=facts.header,
            rows=facts.rows, file_first_id=facts.first_id or 0, file_last_id=facts.last_id or 0,
            in_order=facts.in_order, duplicates=facts.duplicates, id_base=id_base,
            named_columns=named_columns))


def segment_times(job_layout: CsvLayout, got: Fetched, facts: CsvFacts, segment: Segment,
                  id_base: int = 0) -> dict[int, int]:
    """The times (µs) of a stretch's first and last trades: from the inspection at the file's
    ends, otherwise from one more pass over the file."""
    known = {}
    if facts.first_id is not None and facts.first_time_us is not None:
        known[facts.first_id] = facts.first_time_us
    if facts.last_id is not None and facts.last_time_us is not None:
        known[facts.last_id] = facts.last_time_us
    wanted = {segment.first_id, segment.last_id} - set(known)
    if wanted:
        known.update(lookup_times(got.path, got.filename, job_layout, got.period, wanted, id_base))
    if not {segment.first_id, segment.last_id} <= set(known):
        raise ArchiveError(f"{got.filename}: no row with id {segment.first_id} or {segment.last_id}")
    return known
