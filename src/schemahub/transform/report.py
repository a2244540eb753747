"""What a transform run reports: options in, per-product results and the commit out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from schemahub.metrics.runs import RunProduct, RunRecord
from schemahub.table.delta import Cursor
from schemahub.transform import state


@dataclass(frozen=True)
class TransformOptions:
    rebuild: bool = False
    dry_run: bool = False
    retry_quarantined: bool = False
    group_files: int = 200
    """Raw files per DuckDB read (about 200,000 trades)."""


@dataclass
class ProductResult:
    exchange: str
    symbol: str
    files: int = 0
    raw_trades: int = 0
    rows_written: int = 0
    duplicates_dropped: int = 0
    quarantined: int = 0
    cursor_before: Cursor | None = None
    cursor_after: Cursor | None = None


@dataclass
class TransformReport:
    run_id: str
    started_at: datetime
    rebuild: bool
    dry_run: bool
    table_version_before: int | None = None
    table_version_after: int | None = None
    finished_at: datetime | None = None
    elapsed_s: float = 0.0
    products: list[ProductResult] = field(default_factory=list)
    quarantined: list[state.Quarantined] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    commit_attempts: int = 0
    skipped_held: list[str] = field(default_factory=list)
    """Products another transform process had leased (it transforms them)."""
    commits: int = 1
    """Delta commits this run made (one per round: a big backfill commits in slices)."""

    def merged(self, later: TransformReport) -> TransformReport:
        """This round's report with a later round's added."""
        self.products += later.products
        self.quarantined += [q for q in later.quarantined if q.key not in {r.key for r in self.quarantined}]
        self.errors += [e for e in later.errors if e not in self.errors]
        self.commit_attempts += later.commit_attempts
        self.commits += later.commits
        self.table_version_after = later.table_version_after
        return self

    @property
    def rows_written(self) -> int:
        return sum(p.rows_written for p in self.products)

    @property
    def raw_trades(self) -> int:
        return sum(p.raw_trades for p in self.products)

    @property
    def needs_attention(self) -> bool:
        return bool(self.quarantined or self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "rebuild": self.rebuild, "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "elapsed_s": round(self.elapsed_s, 3),
            "table_version_before": self.table_version_before,
            "table_version_after": self.table_version_after,
            "files": sum(p.files for p in self.products), "raw_trades": self.raw_trades,
            "rows_written": self.rows_written,
            "duplicates_dropped": sum(p.duplicates_dropped for p in self.products),
            "products": [{**vars(p), "cursor_before": _cursor(p.cursor_before),
                          "cursor_after": _cursor(p.cursor_after)} for p in self.products],
            "quarantined": [q.model_dump(mode="json") for q in self.quarantined],
            "errors": self.errors, "commit_attempts": self.commit_attempts, "commits": self.commits,
            "skipped_held": self.skipped_held,
        }

    def record_into(self, record: RunRecord) -> None:
        """This transform's share of its run record."""
        for p in self.products:
            record.products.append(RunProduct(
                exchange=p.exchange, symbol=p.symbol, status="ok" if not p.quarantined else "attention",
                trades=p.rows_written, duplicates_dropped=p.duplicates_dropped, quarantined=p.quarantined,
                watermark_before=p.cursor_before.through_id if p.cursor_before else None,
                watermark_after=p.cursor_after.through_id if p.cursor_after else None))
        record.trades = self.rows_written
        record.status = "attention" if self.needs_attention else "ok"
        record.details.update(run_id=self.run_id, rebuild=self.rebuild, raw_trades=self.raw_trades,
                              table_version_before=self.table_version_before,
                              table_version_after=self.table_version_after, errors=self.errors,
                              quarantined=[q.key for q in self.quarantined])


def _cursor(cursor: Cursor | None) -> list[int] | None:
    return None if cursor is None else [cursor.from_id, cursor.through_id]


class StageProgress(Protocol):
    """Where a long stage reports progress (a terminal bar, log lines, or nothing)."""

    def start(self, total: int | None) -> None:
        """``total`` more units to do (called again for each round of a long transform)."""

    def advance(self, done: int, rows: int) -> None: ...


class NoProgress:
    def start(self, total: int | None) -> None:
        pass

    def advance(self, done: int, rows: int) -> None:
        pass
