"""Run history: every ingest, transform, compact and check leaves one record in the lake.

A record is one JSON object, written once (create-only, one PUT on S3), under
``runs/date=YYYY-MM-DD/<start>-<command>-<run id>.json``: nothing is ever rewritten, so
concurrent runs on many hosts never contend, and a crash loses at most the record of the
run it killed. ``schemahub query`` reads them as the tables ``runs`` (one row per run)
and ``run_products`` (one row per product of a run); the dashboard and the Prometheus
exporter are built on them.

The record keeps what an operator asks after the fact: who ran what where and when, how
it ended, and per exchange and product the trades, requests by HTTP status, latency
histogram, retries, 429s, breaker trips, bytes, and watermarks before and after.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemahub.errors import ConfigError, Interrupted, SchemahubError
from schemahub.infra import processes
from schemahub.infra.storage import Storage
from schemahub.metrics.counters import HttpCounts
from schemahub.metrics.latency import quantile
from schemahub.timeutil import new_run_id

log = logging.getLogger("schemahub.runs")

RUNS_PREFIX = "runs/"
Command = Literal["ingest", "transform", "compact", "check", "repair", "certify", "run"]
RunStatus = Literal["ok", "failed", "interrupted", "attention"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExchangeRun(HttpCounts):
    """One exchange's HTTP client over a run: its counters, and the circuit breaker's state."""

    exchange: str
    breaker_trips: int = 0
    breaker_state: str = "closed"

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` quantile of answered requests' latency, in milliseconds (None: no answers)."""
        seconds = quantile(self.latency_buckets, q)
        return None if seconds is None else seconds * 1000


class RunProduct(_Model):
    """One product's share of a run (the fields a command does not produce stay null)."""

    exchange: str
    symbol: str
    status: str
    trades: int = 0
    """Ingest: new trades fetched; transform: rows written."""
    requests: int | None = None
    retries: int | None = None
    rate_limited: int | None = None
    server_errors: int | None = None
    bytes: int | None = None
    """Bytes received from the exchange."""
    raw_bytes: int | None = None
    """Bytes written to the raw lake."""
    watermark_before: int | None = None
    watermark_after: int | None = None
    last_trade_time: datetime | None = None
    missing_ids: int | None = None
    duplicates_dropped: int | None = None
    quarantined: int | None = None
    unexplained_gaps: int | None = None
    elapsed_s: float | None = None
    error: str | None = None


class RunRecord(_Model):
    format: Literal["schemahub.run/v1"] = "schemahub.run/v1"
    run_id: str
    command: Command
    host: str
    pid: int
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float | None = None
    status: RunStatus = "ok"
    error: str | None = None
    trades: int = 0
    exchanges: list[ExchangeRun] = Field(default_factory=list)
    products: list[RunProduct] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return (f"{RUNS_PREFIX}date={self.started_at:%Y-%m-%d}/"
                f"{self.started_at:%Y%m%dT%H%M%S}-{self.command}-{self.run_id}.json")


def new_record(command: Command) -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord(run_id=new_run_id(now), command=command, host=processes.HOST, pid=os.getpid(),
                     started_at=now)


def save(storage: Storage, record: RunRecord) -> None:
    """Write the record once; a failure to write it is logged, never fatal to the run."""
    record.finished_at = record.finished_at or datetime.now(UTC)
    record.duration_s = round((record.finished_at - record.started_at).total_seconds(), 3)
    try:
        storage.create(record.key, orjson.dumps(record.model_dump(mode="json")))
    except SchemahubError as exc:
        log.error("could not write the run record %s: %s", record.key, exc)


def read_record(storage: Storage, key: str) -> RunRecord:
    """One run record; ``ValueError`` when it is not one (invalid JSON or fields)."""
    return RunRecord.model_validate(orjson.loads(storage.read(key) or b""))


def load_all(storage: Storage) -> list[RunRecord]:
    """Every run record, oldest first (unreadable ones are skipped with a warning)."""
    records = []
    for info in storage.list(RUNS_PREFIX):
        try:
            records.append(read_record(storage, info.key))
        except ValueError as exc:
            log.warning("skipping unreadable run record %s: %s", info.key, exc)
    return sorted(records, key=lambda r: r.started_at)


@contextmanager
def recording(storage: Storage, command: Command, emit: str | None = None) -> Iterator[RunRecord]:
    """Record the run in the ``with`` block; an exception marks it failed (and propagates).

    A ``ConfigError`` is bad input refused before any work: nothing is written, not even the
    record. ``emit``: a CloudWatch namespace to also print the run's metrics to (EMF on stderr).
    """
    record = new_record(command)
    try:
        yield record
    except ConfigError:
        raise
    except BaseException as exc:
        record.status = "interrupted" if isinstance(exc, KeyboardInterrupt | Interrupted) else "failed"
        record.error = str(exc) or type(exc).__name__
        _finish(storage, record, emit)
        raise
    _finish(storage, record, emit)


def _finish(storage: Storage, record: RunRecord, emit: str | None) -> None:
    save(storage, record)
    if emit:
        from schemahub.metrics import emf

        emf.emit(record, emit)
