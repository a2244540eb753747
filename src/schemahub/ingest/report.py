"""Typed results of an ingest run, the progress interface the engine reports to, and how a
run's reports become its run record (metrics/runs.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

from schemahub.metrics.counters import HttpCounts, RequestStats
from schemahub.metrics.runs import ExchangeRun, RunProduct, RunRecord
from schemahub.timeutil import from_us


class Status(enum.StrEnum):
    OK = "ok"
    UP_TO_DATE = "up-to-date"
    SKIPPED = "skipped"
    """Another owner holds the product's lease."""
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    PLANNED = "planned"
    """Dry run: nothing was written."""


@dataclass
class ProductReport:
    exchange: str
    symbol: str
    status: Status = Status.OK
    watermark_before: int | None = None
    watermark_after: int | None = None
    low_before: int | None = None
    low_after: int | None = None
    """The low end (start after id) before and after: lower after an extension back in time."""
    archive_files: int = 0
    """Bulk-archive files committed (their trades are in ``trades`` too)."""
    archive_fallbacks: list[str] = field(default_factory=list)
    """Archive files not used (bad checksum or content), whose ids came from REST instead."""
    head_id: int | None = None
    cold_start: bool = False
    trades: int = 0
    files_written: int = 0
    raw_bytes: int = 0
    files_adopted: int = 0
    missing_ids: int = 0
    first_trade_id: int | None = None
    last_trade_id: int | None = None
    first_trade_us: int | None = None
    last_trade_us: int | None = None
    planned_requests: int = 0
    elapsed_s: float = 0.0
    error: str | None = None
    config_error: bool = False
    """The failure is the user's configuration (exit status 2), not the run's (1)."""
    stats: RequestStats = field(default_factory=RequestStats)

    @property
    def trades_per_s(self) -> float:
        return self.trades / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def label(self) -> str:
        return f"{self.exchange} {self.symbol}"

    def fail(self, error: str, *, config: bool = False) -> None:
        self.status, self.error, self.config_error = Status.FAILED, error, config

    def note_trades(self, first_id: int, last_id: int, first_us: int, last_us: int, count: int) -> None:
        self.trades += count
        if self.first_trade_id is None or first_id < self.first_trade_id:
            self.first_trade_id, self.first_trade_us = first_id, first_us
        if self.last_trade_id is None or last_id > self.last_trade_id:
            self.last_trade_id, self.last_trade_us = last_id, last_us

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stats"}
        out["status"] = self.status.value
        out["stats"] = self.stats.snapshot().model_dump()
        for name in ("first_trade_us", "last_trade_us"):
            value = out.pop(name)
            out[name.replace("_us", "_time")] = None if value is None else from_us(value).isoformat()
        out["trades_per_s"] = round(self.trades_per_s, 1)
        return out

    def to_run_product(self) -> RunProduct:
        stats = self.stats.snapshot()
        last = None if self.last_trade_us is None else from_us(self.last_trade_us)
        return RunProduct(
            exchange=self.exchange, symbol=self.symbol, status=self.status.value, trades=self.trades,
            requests=stats.requests, retries=stats.retries, rate_limited=stats.rate_limited,
            server_errors=stats.server_errors, bytes=stats.bytes, raw_bytes=self.raw_bytes,
            watermark_before=self.watermark_before, watermark_after=self.watermark_after,
            last_trade_time=last, missing_ids=self.missing_ids, elapsed_s=round(self.elapsed_s, 3),
            error=self.error)


@dataclass
class IngestReport:
    run_id: str
    exchange: str
    started_at: datetime
    finished_at: datetime | None = None
    dry_run: bool = False
    interrupted: bool = False
    products: list[ProductReport] = field(default_factory=list)
    estimated_seconds: float | None = None
    http: HttpCounts = field(default_factory=HttpCounts)
    """The exchange client's counters for the run."""
    breaker_trips: int = 0
    breaker_state: str = "closed"
    error: str | None = None
    """Why the exchange as a whole did not run (a ban, unreachable, its product list)."""
    config_error: bool = False
    error_exit: int = 1
    """The exit status ``error`` stands for (3: another run of the same job holds it)."""

    @property
    def failed(self) -> list[ProductReport]:
        return [p for p in self.products if p.status in (Status.FAILED, Status.INTERRUPTED)]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and self.error is None

    @property
    def exit_code(self) -> int:
        """0 ok; 130 interrupted; 2 when every failure is configuration; else 1."""
        if self.ok:
            return 0
        if self.interrupted or any(p.status is Status.INTERRUPTED for p in self.products):
            return 130
        if self.error is not None and self.error_exit == 3:
            return 3
        config = (self.error is None or self.config_error) and all(
            p.config_error for p in self.products if p.status is Status.FAILED)
        return 2 if config else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "exchange": self.exchange,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "ok": self.ok,
            "error": self.error,
            "estimated_seconds": self.estimated_seconds,
            "products": [p.to_dict() for p in self.products],
            "http": {**self.http.model_dump(), "breaker_trips": self.breaker_trips,
                     "breaker_state": self.breaker_state},
        }

    def to_exchange_run(self) -> ExchangeRun:
        return ExchangeRun(exchange=self.exchange, breaker_trips=self.breaker_trips,
                           breaker_state=self.breaker_state, **self.http.model_dump())


def exit_code(reports: list[IngestReport]) -> int:
    """The run's exit status over several exchanges: the most serious one's."""
    codes = {report.exit_code for report in reports}
    for code in (130, 1, 3, 2):
        if code in codes:
            return code
    return 0


def record_ingest(record: RunRecord, reports: list[IngestReport]) -> None:
    """Fill an ingest run's record from its exchanges' reports."""
    for report in reports:
        record.exchanges.append(report.to_exchange_run())
        record.products.extend(p.to_run_product() for p in report.products)
        if report.error:
            record.details.setdefault("exchange_errors", {})[report.exchange] = report.error
    code = exit_code(reports)
    record.status = "interrupted" if code == 130 else "failed" if code else "ok"
    record.trades = sum(p.trades for p in record.products)
    record.details["exchange_run_ids"] = {r.exchange: r.run_id for r in reports}


class Progress(Protocol):
    """Where the engine reports progress (a terminal bar, log lines, or nothing)."""

    def product_started(self, name: str, total_ids: int | None) -> None:
        """``name`` is "exchange symbol"; ``total_ids`` is None when it cannot be known ahead."""

    def chunk_done(self, name: str, ids: int, trades: int, stats: RequestStats) -> None: ...

    def bytes_received(self, name: str, size: int) -> None:
        """Bytes of a bulk-archive download arrived."""

    def product_finished(self, report: ProductReport) -> None: ...


class NullProgress:
    def product_started(self, name: str, total_ids: int | None) -> None:
        pass

    def chunk_done(self, name: str, ids: int, trades: int, stats: RequestStats) -> None:
        pass

    def bytes_received(self, name: str, size: int) -> None:
        pass

    def product_finished(self, report: ProductReport) -> None:
        pass
