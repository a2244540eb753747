"""Typed results of an ingest run, and the progress interface the engine reports to."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

from schemahub.http.client import RequestStats
from schemahub.sources.base import us_to_datetime


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
    stats: RequestStats = field(default_factory=RequestStats)

    @property
    def trades_per_s(self) -> float:
        return self.trades / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def label(self) -> str:
        return f"{self.exchange} {self.symbol}"

    def note_trades(self, first_id: int, last_id: int, first_us: int, last_us: int, count: int) -> None:
        self.trades += count
        if self.first_trade_id is None or first_id < self.first_trade_id:
            self.first_trade_id, self.first_trade_us = first_id, first_us
        if self.last_trade_id is None or last_id > self.last_trade_id:
            self.last_trade_id, self.last_trade_us = last_id, last_us

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stats"}
        out["status"] = self.status.value
        out["stats"] = self.stats.snapshot()
        for name in ("first_trade_us", "last_trade_us"):
            value = out.pop(name)
            out[name.replace("_us", "_time")] = None if value is None else us_to_datetime(value).isoformat()
        out["trades_per_s"] = round(self.trades_per_s, 1)
        return out


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
    http: dict[str, Any] = field(default_factory=dict)
    """The exchange client's counters for the run (statuses, latency histogram, breaker)."""
    error: str | None = None
    """Why the exchange was not asked at all (a ban from an earlier run)."""

    @property
    def failed(self) -> list[ProductReport]:
        return [p for p in self.products if p.status in (Status.FAILED, Status.INTERRUPTED)]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and self.error is None

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
            "http": self.http,
        }


class Progress(Protocol):
    """Where the engine reports progress (a terminal bar, log lines, or nothing)."""

    def product_started(self, name: str, total_ids: int | None) -> None:
        """``name`` is "exchange symbol"; ``total_ids`` is None when it cannot be known ahead."""

    def chunk_done(self, name: str, ids: int, trades: int, stats: RequestStats) -> None: ...

    def product_finished(self, report: ProductReport) -> None: ...


class NullProgress:
    def product_started(self, name: str, total_ids: int | None) -> None:
        pass

    def chunk_done(self, name: str, ids: int, trades: int, stats: RequestStats) -> None:
        pass

    def product_finished(self, report: ProductReport) -> None:
        pass
