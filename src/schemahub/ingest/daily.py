"""Venues whose history exists only as daily archive files (Bybit spot).

A product's coverage is a run of days. Its trade ids number each day's rows from its
base (``YYYYMMDD`` x 10^9, see ``sources.bybit_archive``), so the covered interval of ids
still grows at both ends like any other venue's - only the step from one day's last id to
the next day's first is a seam between files, not missing trades. Holes inside a day's
file are exchange gaps (logged as such; no REST could fill them).

* forward: the days after the last whole file (kept as the checkpoint's cursor, the next
  day to ask for) up to yesterday (UTC): a day is published the day after. Where the host
  lists its files (Bybit's folder index, one request), only listed days are asked for; a
  404 means "not published": the next run asks again.
* backwards (``--since`` before the first covered day): a segment from ``--since`` grows
  upwards through ``archived.fill`` until it meets the first covered day, then joins.

Everything is written as for Binance's archive: the verbatim file, a coverage record per
stretch of ids, the watermark moved last (``ingest.archived``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from schemahub.infra.checkpoints import Backfill
from schemahub.ingest import archived
from schemahub.ingest.report import Status
from schemahub.ingest.run import ChunkOutcome, ProductSink
from schemahub.sources.archive import DAY_IDS, ArchiveSource, Period
from schemahub.sources.base import ArchiveOnlySource
from schemahub.timeutil import from_us, to_us


def ingest(source: ArchiveOnlySource, sink: ProductSink, since_us: int, archive: ArchiveSource,
           extend_since_us: int | None, today: date | None = None) -> None:
    """Forward to yesterday's file; then back to ``extend_since_us`` if it lies before the first day."""
    state = sink.state
    dataset = archive.dataset_for(source.endpoint)
    if dataset is None:
        raise ValueError(f"{archive.name} has no archive dataset for {source.endpoint}")
    yesterday = (today or datetime.now(UTC).date()) - timedelta(days=1)
    if state.stored is None:
        first_day = from_us(since_us).date()
        state.start_after_id = state.watermark = archive.id_base(Period(first_day, "daily"))
        state.cursor = first_day.isoformat()
        sink.save_start()
    first_day = date.fromisoformat(state.cursor) if state.cursor else from_us(since_us).date()
    before = state.watermark

    def commit(outcomes: list[ChunkOutcome], watermark: int) -> None:
        sink.commit(outcomes, watermark)

    job = archived.ArchiveJob(archive, dataset, "archive", source.endpoint, sink,
                              _seams(commit), commit, file_done=_next_day(sink))
    sink.started(None)
    listed = archive.listing(state.product, dataset, state.report.stats)
    if first_day <= yesterday:
        archived.fill(job, state.watermark, None, first_day, yesterday, listed)
    if extend_since_us is not None and not sink.stop.stopped:
        _extend_down(archive, dataset, source.endpoint, sink, extend_since_us, listed)
    if state.watermark == before and state.report.trades == 0 and state.report.status is Status.OK:
        state.report.status = Status.UP_TO_DATE


def _next_day(sink: ProductSink) -> archived.FileDone:
    def done(period: Period, through_id: int) -> None:
        # The whole day is covered: the next run starts with the next day's file.
        sink.commit([], through_id, cursor=period.end.isoformat())

    return done


def _seams(commit: archived.Commit) -> archived.RestFill:
    """What lies between two stretches of ids: a new day (nothing is missing: each day numbers
    its own rows), or a hole inside one day's file (an exchange gap: no other source has it)."""

    def seam(lo: int, hi: int) -> None:
        first = max(lo + 1, hi - hi % DAY_IDS + 1)  # ids of hi's own day only: earlier days' ended
        missing = [(first, hi)] if first <= hi else []
        commit([ChunkOutcome(None, 0, None, None, None, None, missing)], hi)

    return seam


def _extend_down(archive: ArchiveSource, dataset: str, endpoint: str, sink: ProductSink,
                 since_us: int, listed: set[date] | None) -> None:
    """Days before the first covered one: a segment from ``since`` upwards that joins the low end."""
    state = sink.state
    low = state.start_after_id
    first_us = state.first_us if state.first_us is not None else sink.first_covered_us()
    if first_us is None:
        return  # nothing covered yet: the forward run starts at --since anyway
    first_covered = from_us(first_us).date()
    since_day = from_us(since_us).date()
    backfill = state.backfill
    if backfill is None:
        covered = state.covered_since_us
        if since_day >= first_covered or (covered is not None and since_us >= covered):
            return
        base = archive.id_base(Period(since_day, "daily"))
        backfill = state.backfill = Backfill(since=from_us(since_us), after_id=base, through_id=base,
                                             cursor=since_day.isoformat())
        sink.save()  # before anything is written for it: a re-run resumes this segment
    assert backfill.through_id is not None and backfill.after_id is not None and backfill.cursor is not None

    def commit(outcomes: list[ChunkOutcome], through: int) -> None:
        for outcome in outcomes:
            if backfill.first_trade_time is None and outcome.first_us is not None:
                backfill.first_trade_time = from_us(outcome.first_us)
        backfill.through_id = through
        sink.extend_down(outcomes, low, None)  # the segment's progress; the low end stays

    def done(period: Period, through_id: int) -> None:
        backfill.cursor = period.end.isoformat()
        sink.extend_down([], low, None)

    job = archived.ArchiveJob(archive, dataset, "archive", endpoint, sink, _seams(commit), commit,
                              file_done=done)
    day = date.fromisoformat(backfill.cursor)
    if day < first_covered:
        archived.fill(job, backfill.through_id, low, day, first_covered - timedelta(days=1), listed)
    if sink.stop.stopped or date.fromisoformat(backfill.cursor) < first_covered:
        return
    # Joined: the segment is the new bottom of the covered interval.
    state.backfill = None
    since, covered = to_us(backfill.since) if backfill.since else since_us, state.covered_since_us
    state.covered_since_us = since if covered is None else min(covered, since)
    first = backfill.first_trade_time
    sink.extend_down([], backfill.after_id, None if first is None else to_us(first))
