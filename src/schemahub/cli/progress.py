"""Progress for long commands: rich bars on a terminal, periodic structured lines otherwise."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from schemahub.http.client import RequestStats
from schemahub.ingest.report import ProductReport

log = logging.getLogger("schemahub.progress")


class _RateColumn(ProgressColumn):
    """trades/s, requests/s and 429s of one product."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        trades = task.fields.get("trades", 0)
        requests = task.fields.get("requests", 0)
        limited = task.fields.get("limited", 0)
        if elapsed <= 0:
            return Text("")
        text = f"{trades / elapsed:>9,.0f} trades/s {requests / elapsed:>5.1f} req/s"
        return Text(text + (f" {limited} x429" if limited else ""), style="cyan")


class TerminalProgress:
    """One bar per product: ids covered of the plan, with rates and ETA."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description:<12}"), BarColumn(bar_width=28), MofNCompleteColumn(),
            _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            refresh_per_second=4,
        )
        self._tasks: dict[str, TaskID] = {}
        self._trades: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def product_started(self, symbol: str, total_ids: int) -> None:
        with self._lock:
            self._tasks[symbol] = self._progress.add_task(symbol, total=total_ids, trades=0)
            self._trades[symbol] = 0

    def chunk_done(self, symbol: str, ids: int, trades: int, stats: RequestStats) -> None:
        with self._lock:
            self._trades[symbol] += trades
            snap = stats.snapshot()
            self._progress.update(self._tasks[symbol], advance=ids, trades=self._trades[symbol],
                                  requests=snap["requests"], limited=snap["rate_limited"])

    def product_finished(self, report: ProductReport) -> None:
        with self._lock:
            task = self._tasks.get(report.symbol)
            if task is not None:
                self._progress.update(task, description=f"{report.symbol} {report.status.value}")


@dataclass
class _Counts:
    total: int
    done: int = 0
    trades: int = 0
    started: float = field(default_factory=time.monotonic)


class LogProgress:
    """Not a terminal: a structured log line per product every ``interval`` seconds."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._counts: dict[str, _Counts] = {}
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def product_started(self, symbol: str, total_ids: int) -> None:
        with self._lock:
            self._counts[symbol] = _Counts(total_ids)
        log.info("ingesting %s: %d ids to cover", symbol, total_ids,
                 extra={"event": "product_started", "symbol": symbol, "total_ids": total_ids})

    def chunk_done(self, symbol: str, ids: int, trades: int, stats: RequestStats) -> None:
        with self._lock:
            counts = self._counts[symbol]
            counts.done += ids
            counts.trades += trades
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            lines = [(s, c) for s, c in self._counts.items() if c.done < c.total]
        for name, c in lines:
            elapsed = max(now - c.started, 1e-9)
            rate = c.done / elapsed
            eta = (c.total - c.done) / rate if rate > 0 else None
            log.info("%s %d/%d ids, %d trades, %.0f trades/s", name, c.done, c.total, c.trades,
                     c.trades / elapsed,
                     extra={"event": "progress", "symbol": name, "done_ids": c.done, "total_ids": c.total,
                            "trades": c.trades, "trades_per_s": round(c.trades / elapsed, 1),
                            "eta_s": None if eta is None else round(eta, 1)})

    def product_finished(self, report: ProductReport) -> None:
        log.info("%s %s: %d trades", report.symbol, report.status.value, report.trades,
                 extra={"event": "product_finished", "symbol": report.symbol,
                        "status": report.status.value, "trades": report.trades,
                        "watermark": report.watermark_after, "error": report.error})
