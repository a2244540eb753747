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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemahub.errors import SchemahubError
from schemahub.infra import processes
from schemahub.infra.storage import Storage
from schemahub.metrics.latency import quantile

if TYPE_CHECKING:
    from schemahub.ingest.report import IngestReport
    from schemahub.quality.checks import CheckResult
    from schemahub.table.delta import CompactResult
    from schemahub.transform.runner import TransformReport

log = logging.getLogger("schemahub.runs")

RUNS_PREFIX = "runs/"
Command = Literal["ingest", "transform", "compact", "check"]
RunStatus = Literal["ok", "failed", "interrupted", "attention"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExchangeRun(_Model):
    """One exchange's HTTP client over a run."""

    exchange: str
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    banned: int = 0
    bytes: int = 0
    limiter_wait_s: float = 0.0
    latency_s: float = 0.0
    statuses: dict[str, int] = Field(default_factory=dict)
    latency_buckets: list[int] = Field(default_factory=list)
    breaker_trips: int = 0
    breaker_state: str = "closed"

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` quantile of answered requests' latency, in milliseconds (None: no answers)."""
        seconds = quantile(self.latency_buckets, q)
        return None if seconds is None else seconds * 1000


class ProductRun(_Model):
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
    products: list[ProductRun] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return (f"{RUNS_PREFIX}date={self.started_at:%Y-%m-%d}/"
                f"{self.started_at:%Y%m%dT%H%M%S}-{self.command}-{self.run_id}.json")


def new_record(command: Command) -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord(run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", command=command,
                     host=processes.HOST, pid=os.getpid(), started_at=now)


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
def recording(storage: Storage, command: Command, emit: bool = False) -> Iterator[RunRecord]:
    """Record the run in the ``with`` block; an exception marks it failed (and propagates)."""
    record = new_record(command)
    try:
        yield record
    except BaseException as exc:
        record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.error = str(exc) or type(exc).__name__
        raise
    finally:
        save(storage, record)
        if emit:
            from schemahub.metrics import emf

            emf.emit(record)


# -- from the stages' reports ------------------------------------------------------------------


def add_ingest(record: RunRecord, reports: list[IngestReport]) -> None:
    for report in reports:
        record.exchanges.append(ExchangeRun(exchange=report.exchange, **{
            k: v for k, v in report.http.items() if k in ExchangeRun.model_fields}))
        for p in report.products:
            stats = p.stats.snapshot()
            last = None if p.last_trade_us is None else datetime.fromtimestamp(p.last_trade_us / 1e6, UTC)
            record.products.append(ProductRun(
                exchange=p.exchange, symbol=p.symbol, status=p.status.value, trades=p.trades,
                requests=stats["requests"], retries=stats["retries"], rate_limited=stats["rate_limited"],
                server_errors=stats["server_errors"], bytes=stats["bytes"], raw_bytes=p.raw_bytes,
                watermark_before=p.watermark_before, watermark_after=p.watermark_after,
                last_trade_time=last, missing_ids=p.missing_ids,
                elapsed_s=round(p.elapsed_s, 3), error=p.error))
        if report.error:
            record.details.setdefault("exchange_errors", {})[report.exchange] = report.error
        if report.interrupted:
            record.status = "interrupted"
        elif not report.ok and record.status == "ok":
            record.status = "failed"
    record.trades = sum(p.trades for p in record.products)
    record.details["exchange_run_ids"] = {r.exchange: r.run_id for r in reports}


def add_transform(record: RunRecord, report: TransformReport) -> None:
    for p in report.products:
        record.products.append(ProductRun(
            exchange=p.exchange, symbol=p.symbol, status="ok" if not p.quarantined else "attention",
            trades=p.rows_written, duplicates_dropped=p.duplicates_dropped, quarantined=p.quarantined,
            watermark_before=p.cursor_before.through_id if p.cursor_before else None,
            watermark_after=p.cursor_after.through_id if p.cursor_after else None))
    record.trades = report.rows_written
    record.status = "attention" if report.needs_attention else "ok"
    record.details.update(run_id=report.run_id, rebuild=report.rebuild, raw_trades=report.raw_trades,
                          table_version_before=report.table_version_before,
                          table_version_after=report.table_version_after, errors=report.errors,
                          quarantined=[q.key for q in report.quarantined])


def add_compact(record: RunRecord, result: CompactResult) -> None:
    record.details.update(version_before=result.version_before, version_after=result.version_after,
                          files_removed=result.files_removed, files_added=result.files_added,
                          vacuumed=len(result.vacuumed))


def add_check(record: RunRecord, results: list[CheckResult]) -> None:
    record.details["checks"] = [{"name": r.name, "status": r.status, "summary": r.summary} for r in results]
    if any(r.status == "fail" for r in results):
        record.status = "failed"
    by_product: dict[tuple[str, str], ProductRun] = {}
    for result in results:
        for row in result.details:
            if "exchange" not in row or "symbol" not in row:
                continue
            key = (row["exchange"], row["symbol"])
            product = by_product.setdefault(key, ProductRun(exchange=key[0], symbol=key[1], status="ok"))
            if result.name == "gaps" and "rows" in row:
                product.unexplained_gaps = int(row.get("unexplained_ids", 0))
                if product.unexplained_gaps:
                    product.status = "failed"
    record.products = list(by_product.values())
