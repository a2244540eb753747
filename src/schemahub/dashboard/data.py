"""What the dashboard shows, computed from the lake: the table (DuckDB), the run history, the
gap logs and object sizes. Plain data only; rendering is dashboard/render.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from deltalake import DeltaTable

from schemahub.infra.checkpoints import GapLogStore
from schemahub.infra.storage import Storage
from schemahub.metrics.runs import RunRecord, load_all
from schemahub.quality.certificates import Certificates
from schemahub.query.engine import QueryEngine


@dataclass
class Headline:
    trades: int = 0
    exchanges: int = 0
    products: int = 0
    first_trade: datetime | None = None
    last_trade: datetime | None = None
    table_bytes: int = 0
    raw_bytes: int = 0
    runs: int = 0
    failed_runs: int = 0

    @property
    def compression(self) -> float | None:
        """Raw (gzip JSONL) bytes per table byte."""
        return self.raw_bytes / self.table_bytes if self.table_bytes else None


@dataclass
class DayCoverage:
    exchange: str
    symbol: str
    day: date
    rows: int
    span: int
    """Trade ids from the day's first id to the next day's first (or the day's last)."""
    known_gaps: int
    """Ids inside the span the exchange skipped (the ingest gap log)."""

    @property
    def unexplained(self) -> int:
        return max(0, self.span - self.rows - self.known_gaps)

    @property
    def coverage(self) -> float:
        """Share of the id span present in the table, in percent."""
        return 100.0 * self.rows / self.span if self.span else 100.0


@dataclass
class Freshness:
    exchange: str
    symbol: str
    newest_trade: datetime
    newest_ingest: datetime
    lag_s: float


@dataclass
class ApiPoint:
    """One exchange in one ingest run."""

    at: datetime
    exchange: str
    p50_ms: float | None
    p95_ms: float | None
    requests: int
    rate_limited: int
    server_errors: int
    breaker_trips: int
    banned: int


@dataclass
class Dashboard:
    lake: str
    generated_at: datetime
    headline: Headline
    runs: list[RunRecord] = field(default_factory=list)
    api: list[ApiPoint] = field(default_factory=list)
    coverage: list[DayCoverage] = field(default_factory=list)
    freshness: list[Freshness] = field(default_factory=list)
    storage_by_exchange: dict[str, tuple[int, int]] = field(default_factory=dict)
    """exchange -> (raw bytes, table bytes)."""
    certificates: list[dict[str, Any]] = field(default_factory=list)
    """Every completeness certificate (quality/certificates.py), in key order."""


def collect(lake: str, storage: Storage, engine: QueryEngine, now: datetime | None = None) -> Dashboard:
    now = now or datetime.now(UTC)
    runs = load_all(storage)
    headline = Headline(runs=len(runs), failed_runs=sum(r.status in ("failed", "interrupted") for r in runs))
    board = Dashboard(lake=lake, generated_at=now, headline=headline, runs=runs, api=_api(runs))
    raw = _raw_bytes(storage)
    headline.raw_bytes = sum(raw.values())
    table_bytes = _table_bytes(engine.snapshot)
    headline.table_bytes = sum(table_bytes.values())
    board.storage_by_exchange = {ex: (raw.get(ex, 0), table_bytes.get(ex, 0))
                                 for ex in sorted(set(raw) | set(table_bytes))}
    board.certificates = Certificates(storage).rows()
    if engine.snapshot is None:
        return board
    totals = _rows(engine, "SELECT count(*) AS n, count(DISTINCT exchange) AS e, count(DISTINCT "
                           "(exchange, symbol)) AS p, min(trade_ts) AS lo, max(trade_ts) AS hi "
                           "FROM trades")[0]
    headline.trades, headline.exchanges, headline.products = totals["n"], totals["e"], totals["p"]
    headline.first_trade, headline.last_trade = totals["lo"], totals["hi"]
    board.freshness = [
        Freshness(r["exchange"], r["symbol"], r["newest"], r["ingested"], (now - r["newest"]).total_seconds())
        for r in _rows(engine, "SELECT exchange, symbol, max(trade_ts) AS newest, max(ingest_ts) AS ingested "
                               "FROM trades GROUP BY ALL ORDER BY ALL")]
    board.coverage = _coverage(engine, storage)
    return board


def _rows(engine: QueryEngine, sql: str) -> list[dict[str, Any]]:
    return list(engine.sql(sql).to_pylist())


_COVERAGE_SQL = """
WITH days AS (
    SELECT exchange, symbol, trade_date, min(TRY_CAST(trade_id AS BIGINT)) AS lo,
           max(TRY_CAST(trade_id AS BIGINT)) AS hi, count(*) AS n
    FROM trades WHERE id_kind <> 'derived' GROUP BY ALL)
SELECT exchange, symbol, trade_date, lo, n,
       coalesce(lead(lo) OVER (PARTITION BY exchange, symbol ORDER BY trade_date) - lo, hi - lo + 1) AS span
FROM days ORDER BY exchange, symbol, trade_date
"""


def _coverage(engine: QueryEngine, storage: Storage) -> list[DayCoverage]:
    """Per product and day: how much of the trade-id sequence the table holds."""
    gap_logs = GapLogStore(storage)
    gaps: dict[tuple[str, str], list[tuple[int, int]]] = {}
    out = []
    for row in _rows(engine, _COVERAGE_SQL):
        key = (row["exchange"], row["symbol"])
        if key not in gaps:
            log = gap_logs.load(*key)
            gaps[key] = [(g.first_id, g.last_id) for g in log.value.gaps] if log else []
        lo, hi = row["lo"], row["lo"] + row["span"] - 1
        known = sum(max(0, min(b, hi) - max(a, lo) + 1) for a, b in gaps[key])
        out.append(DayCoverage(row["exchange"], row["symbol"], row["trade_date"], row["n"], row["span"],
                               known))
    return out


def _api(runs: list[RunRecord]) -> list[ApiPoint]:
    points = []
    for run in runs:
        if run.command != "ingest":
            continue
        for ex in run.exchanges:
            points.append(ApiPoint(run.started_at, ex.exchange, ex.latency_ms(0.5), ex.latency_ms(0.95),
                                   ex.requests, ex.rate_limited, ex.server_errors, ex.breaker_trips,
                                   ex.banned))
    return points


def _raw_bytes(storage: Storage) -> dict[str, int]:
    out: dict[str, int] = {}
    for info in storage.list("raw/"):
        exchange = info.key.split("/")[1].removeprefix("exchange=")
        out[exchange] = out.get(exchange, 0) + info.size
    return out


def _table_bytes(delta: DeltaTable | None) -> dict[str, int]:
    import pyarrow as pa

    if delta is None:
        return {}
    adds = pa.table(delta.get_add_actions(flatten=True))
    if adds.num_rows == 0:
        return {}
    out: dict[str, int] = {}
    for exchange, size in zip(adds.column("partition.exchange").to_pylist(),
                              adds.column("size_bytes").to_pylist(), strict=True):
        out[exchange] = out.get(exchange, 0) + int(size)
    return out
