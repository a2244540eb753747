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
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from schemahub.ingest.report import ProductReport
from schemahub.metrics.counters import RequestStats

log = logging.getLogger("schemahub.progress")


class _RateColumn(ProgressColumn):
    """trades/s, requests/s and 429s of one product (and MB/s while archives download)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        trades = task.fields.get("trades", 0)
        requests = task.fields.get("requests", 0)
        limited = task.fields.get("limited", 0)
        received = task.fields.get("bytes", 0)
        if elapsed <= 0:
            return Text("")
        text = f"{trades / elapsed:>9,.0f} trades/s {requests / elapsed:>5.1f} req/s"
        if received:
            text += f" {received / 1e6:,.0f} MB {received / 1e6 / elapsed:,.1f} MB/s"
        return Text(text + (f" {limited} x429" if limited else ""), style="cyan")


class TerminalProgress:
    """One bar per product: ids covered of the plan, with rates and ETA."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description:<20}"), BarColumn(bar_width=28), MofNCompleteColumn(),
            _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            refresh_per_second=4,
        )
        self._tasks: dict[str, TaskID] = {}
        self._trades: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def product_started(self, name: str, total_ids: int | None) -> None:
        with self._lock:
            self._tasks[name] = self._progress.add_task(name, total=total_ids, trades=0)
            self._trades[name] = 0

    def chunk_done(self, name: str, ids: int, trades: int, stats: RequestStats) -> None:
        with self._lock:
            if name not in self._tasks:
                self._tasks[name] = self._progress.add_task(name, total=None, trades=0)
            self._trades[name] = self._trades.get(name, 0) + trades
            snap = stats.snapshot()
            self._progress.update(self._tasks[name], advance=ids, trades=self._trades[name],
                                  requests=snap.requests, limited=snap.rate_limited)

    def bytes_received(self, name: str, size: int) -> None:
        with self._lock:
            if name not in self._tasks:
                self._tasks[name] = self._progress.add_task(name, total=None, trades=0)
            self._bytes[name] = self._bytes.get(name, 0) + size
            self._progress.update(self._tasks[name], bytes=self._bytes[name])

    def product_finished(self, report: ProductReport) -> None:
        with self._lock:
            task = self._tasks.get(report.label)
            if task is not None:
                self._progress.update(task, description=f"{report.label} {report.status.value}")


@dataclass
class _Counts:
    total: int | None
    done: int = 0
    trades: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False


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

    def product_started(self, name: str, total_ids: int | None) -> None:
        with self._lock:
            self._counts[name] = _Counts(total_ids)
        log.info("ingesting %s: %s ids to cover", name, "?" if total_ids is None else total_ids,
                 extra={"event": "product_started", "product": name, "total_ids": total_ids})

    def chunk_done(self, name: str, ids: int, trades: int, stats: RequestStats) -> None:
        with self._lock:
            counts = self._counts.setdefault(name, _Counts(None))
            counts.done += ids
            counts.trades += trades
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            lines = [(s, c) for s, c in self._counts.items() if not c.finished]
        for product, c in lines:
            elapsed = max(now - c.started, 1e-9)
            rate = c.done / elapsed
            eta = (c.total - c.done) / rate if rate > 0 and c.total is not None else None
            log.info("%s %d/%s ids, %d trades, %.0f trades/s, %.0f MB downloaded", product, c.done,
                     "?" if c.total is None else c.total, c.trades, c.trades / elapsed, c.bytes / 1e6,
                     extra={"event": "progress", "product": product, "done_ids": c.done, "total_ids": c.total,
                            "trades": c.trades, "trades_per_s": round(c.trades / elapsed, 1),
                            "bytes_downloaded": c.bytes,
                            "eta_s": None if eta is None else round(eta, 1)})

    def bytes_received(self, name: str, size: int) -> None:
        with self._lock:
            self._counts.setdefault(name, _Counts(None)).bytes += size

    def product_finished(self, report: ProductReport) -> None:
        with self._lock:
            counts = self._counts.get(report.label)
            if counts is not None:
                counts.finished = True  # no more progress lines for it
        log.info("%s %s: %d trades", report.label, report.status.value, report.trades,
                 extra={"event": "product_finished", "exchange": report.exchange, "symbol": report.symbol,
                        "status": report.status.value, "trades": report.trades,
                        "watermark": report.watermark_after, "error": report.error})


class TerminalStage:
    """One bar for a whole stage (transform: raw files read), with rows/s and ETA; without a
    total (compact), a spinner with the elapsed time."""

    def __init__(self, console: Console, description: str, unit: str = "files") -> None:
        self._description, self._unit = description, unit
        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=28),
            MofNCompleteColumn(), TextColumn("{task.fields[unit]}"), _RowsColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, refresh_per_second=4)
        self._task: TaskID | None = None
        self._rows = 0

    def __enter__(self) -> TerminalStage:
        self._progress.start()
        self._task = self._progress.add_task(self._description, total=None, unit=self._unit, rows=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, total: int | None) -> None:
        """``total`` more to do (a transform calls it once per round)."""
        if self._task is not None:
            done = self._progress.tasks[0].completed if self._progress.tasks else 0
            self._progress.update(self._task, total=None if total is None else done + total)

    def advance(self, done: int, rows: int) -> None:
        self._rows += rows
        if self._task is not None:
            self._progress.update(self._task, advance=done, rows=self._rows)


class _RowsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed, rows = task.elapsed or 0.0, task.fields.get("rows", 0)
        if elapsed <= 0 or not rows:
            return Text("")
        return Text(f"{rows:>12,} rows {rows / elapsed:>10,.0f}/s", style="cyan")


class LogStage:
    """Not a terminal: a structured progress line every ``interval`` seconds, and at the end."""

    def __init__(self, stage: str, unit: str = "files", interval: float = 10.0) -> None:
        self._stage, self._unit, self.interval = stage, unit, interval
        self._total: int | None = None
        self._done = self._rows = 0
        self._started = self._last = time.monotonic()

    def __enter__(self) -> LogStage:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._done:
            self._line()

    def start(self, total: int | None) -> None:
        """``total`` more to do (a transform calls it once per round)."""
        if self._total is None and not self._done:
            self._started = self._last = time.monotonic()
        self._total = None if total is None else self._done + total

    def advance(self, done: int, rows: int) -> None:
        self._done += done
        self._rows += rows
        if time.monotonic() - self._last >= self.interval:
            self._line()

    def _line(self) -> None:
        self._last = now = time.monotonic()
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        eta = (self._total - self._done) / rate if self._total is not None and rate > 0 else None
        log.info("%s: %d/%s %s, %d rows, %.0f rows/s", self._stage, self._done,
                 "?" if self._total is None else self._total, self._unit, self._rows, self._rows / elapsed,
                 extra={"event": "progress", "stage": self._stage, "done": self._done, "total": self._total,
                        "unit": self._unit, "rows": self._rows, "rows_per_s": round(self._rows / elapsed, 1),
                        "eta_s": None if eta is None else round(eta, 1)})
