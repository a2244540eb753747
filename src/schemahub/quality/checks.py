"""Data-quality checks over the unified table, the raw lake and the ingest state.

Each check returns a ``CheckResult`` (ok / fail / skip with a one-line summary and
details). ``check`` exits 1 when any check fails.

* duplicates      - rows sharing (exchange, symbol, trade_id)
* gaps            - trade ids missing inside a product's transformed window, split into
                    known exchange gaps (the ingest gap log), ids inside quarantined raw
                    files, and unexplained ones (a failure); products whose ids are
                    derived (Kraken rows without one) have no sequence and are skipped
* reconciliation  - per product, the table holds exactly the raw trades of its window:
                    count == window ids - exchange gaps - quarantined trades (with --deep,
                    every raw id is compared with the table, both ways)
* freshness       - newest trade per product against a threshold
* values          - non-positive prices or quantities
* future          - trades stamped in the future (beyond a clock-skew allowance)
* quarantine      - raw files the transform could not use
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa

from schemahub.infra.checkpoints import GapLogStore
from schemahub.infra.storage import Storage
from schemahub.query.engine import QueryEngine
from schemahub.raw.layout import parse_key
from schemahub.table.delta import Cursor, TradesTable
from schemahub.transform import state

Status = Literal["ok", "fail", "skip"]
_SAMPLE = 20


@dataclass
class CheckResult:
    name: str
    status: Status
    summary: str
    details: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckOptions:
    freshness: timedelta = timedelta(hours=2)
    future_skew: timedelta = timedelta(minutes=5)
    deep: bool = False


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _clip(ranges: Iterable[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """Ranges intersected with [lo, hi]."""
    return [(max(a, lo), min(b, hi)) for a, b in ranges if b >= lo and a <= hi]


def _size(ranges: Iterable[tuple[int, int]]) -> int:
    return sum(b - a + 1 for a, b in ranges)


class Checker:
    def __init__(self, storage: Storage, table: TradesTable, engine: QueryEngine,
                 now: datetime | None = None) -> None:
        self.storage = storage
        self.table = table
        self.engine = engine
        self.now = now or datetime.now(UTC)

    def run(self, options: CheckOptions) -> list[CheckResult]:
        # The cursors must describe the very version the engine's queries read: a transform
        # committing meanwhile would otherwise look like missing rows.
        delta = self.engine.snapshot
        if delta is None:
            return [CheckResult("table", "fail", f"no table at {self.table.uri}: run `schemahub transform`")]
        products = self._products()
        cursors = self.table.cursors(delta, products)
        quarantined = state.all_quarantined(self.storage)
        results = [
            self.duplicates(),
            self.gaps_and_reconciliation(cursors, quarantined),
            self.freshness(options.freshness),
            self.values(),
            self.future(options.future_skew),
            self.quarantine(quarantined),
        ]
        if options.deep:
            results.append(self.deep_reconciliation(cursors, quarantined))
        return results

    def _products(self) -> list[tuple[str, str]]:
        return [(r["exchange"], r["symbol"]) for r in _rows(self.engine.sql(
            "SELECT DISTINCT exchange, symbol FROM trades ORDER BY ALL"))]

    def duplicates(self) -> CheckResult:
        dupes = self.engine.sql(
            "SELECT exchange, symbol, trade_id, count(*) AS copies FROM trades "
            "GROUP BY ALL HAVING count(*) > 1 ORDER BY copies DESC, exchange, symbol, trade_id")
        if dupes.num_rows == 0:
            return CheckResult("duplicates", "ok", "no two rows share (exchange, symbol, trade_id)")
        return CheckResult("duplicates", "fail", f"{dupes.num_rows} keys appear more than once",
                           _rows(dupes.slice(0, _SAMPLE)))

    def gaps_and_reconciliation(self, cursors: dict[tuple[str, str], Cursor],
                                quarantined: list[state.Quarantined]) -> CheckResult:
        gap_logs = GapLogStore(self.storage)
        quarantined_ranges = self._quarantined_ranges(quarantined)
        derived = {(r["exchange"], r["symbol"]) for r in _rows(self.engine.sql(
            "SELECT DISTINCT exchange, symbol FROM trades WHERE id_kind = 'derived'"))}
        details: list[dict[str, Any]] = []
        failed = 0
        for (exchange, symbol), cursor in sorted(cursors.items()):
            lo, hi = cursor.from_id + 1, cursor.through_id
            if hi < lo:
                continue
            if (exchange, symbol) in derived:  # positions, not a sequence: nothing to count against
                details.append({"exchange": exchange, "symbol": symbol, "window": [lo, hi],
                                "skipped": "derived ids (rows without a trade id) have no sequence"})
                continue
            stats = _rows(self.engine.sql(
                "SELECT count(*) AS n FROM trades WHERE exchange = $exchange AND symbol = $symbol "
                "AND TRY_CAST(trade_id AS BIGINT) BETWEEN $lo AND $hi",
                {"exchange": exchange, "symbol": symbol, "lo": lo, "hi": hi}))[0]
            log = gap_logs.load(exchange, symbol)
            known = _merge(_clip(((g.first_id, g.last_id) for g in log.value.gaps) if log else [], lo, hi))
            in_quarantine = _merge(_clip(quarantined_ranges.get((exchange, symbol), []), lo, hi))
            expected = (hi - lo + 1) - _size(known) - _size(_subtract(in_quarantine, known))
            row: dict[str, Any] = {"exchange": exchange, "symbol": symbol, "window": [lo, hi],
                                   "rows": stats["n"], "expected": expected, "known_gaps": _size(known),
                                   "quarantined_ids": _size(in_quarantine)}
            if stats["n"] != expected:
                missing = self._missing_ids(exchange, symbol, lo, hi)
                unexplained = _subtract(_subtract(missing, known), in_quarantine)
                row["unexplained_gaps"] = unexplained[:_SAMPLE]
                row["unexplained_ids"] = _size(unexplained)
                if unexplained or stats["n"] > expected:
                    failed += 1
            details.append(row)
        if not details:
            return CheckResult("gaps", "skip", "no transformed product windows yet")
        if failed:
            return CheckResult("gaps", "fail", f"{failed} product(s) miss trades their raw files or the "
                                               "exchange do not explain", details)
        total_known = sum(d.get("known_gaps", 0) for d in details)
        return CheckResult("gaps", "ok", f"every window complete ({total_known} ids skipped by the exchange, "
                                         "all logged); table == raw for every product", details)

    def _missing_ids(self, exchange: str, symbol: str, lo: int, hi: int) -> list[tuple[int, int]]:
        holes = self.engine.sql("""
            WITH ids AS (
                SELECT TRY_CAST(trade_id AS BIGINT) AS id FROM trades
                WHERE exchange = $exchange AND symbol = $symbol
                  AND TRY_CAST(trade_id AS BIGINT) BETWEEN $lo AND $hi
                UNION ALL SELECT $lo - 1 UNION ALL SELECT $hi + 1)
            SELECT prev + 1 AS first_id, id - 1 AS last_id
            FROM (SELECT id, lag(id) OVER (ORDER BY id) AS prev FROM ids)
            WHERE id > prev + 1 ORDER BY first_id""",
            {"exchange": exchange, "symbol": symbol, "lo": lo, "hi": hi})
        return [(r["first_id"], r["last_id"]) for r in _rows(holes)]

    def _quarantined_ranges(self, quarantined: list[state.Quarantined]) -> dict[tuple[str, str],
                                                                                 list[tuple[int, int]]]:
        ranges: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for record in quarantined:
            key = parse_key(record.key)
            if key is not None:
                ranges.setdefault((key.exchange, key.symbol), []).append((key.first_id, key.last_id))
        return ranges

    def freshness(self, threshold: timedelta) -> CheckResult:
        newest = _rows(self.engine.sql(
            "SELECT exchange, symbol, max(trade_ts) AS newest FROM trades GROUP BY ALL ORDER BY ALL"))
        stale = []
        for row in newest:
            lag = self.now - row["newest"]
            row["lag_s"] = round(lag.total_seconds(), 1)
            row["newest"] = row["newest"].isoformat()
            if lag > threshold:
                stale.append(row)
        if stale:
            return CheckResult("freshness", "fail", f"{len(stale)} product(s) have no trade in the last "
                                                    f"{_human(threshold)}", stale)
        return CheckResult("freshness", "ok", f"every product has a trade within {_human(threshold)}", newest)

    def values(self) -> CheckResult:
        bad = self.engine.sql("SELECT exchange, symbol, trade_id, price, quantity FROM trades "
                              "WHERE price <= 0 OR quantity <= 0 ORDER BY ALL")
        if bad.num_rows:
            return CheckResult("values", "fail", f"{bad.num_rows} rows with a non-positive price or quantity",
                               _rows(bad.slice(0, _SAMPLE)))
        return CheckResult("values", "ok", "every price and quantity is positive")

    def future(self, skew: timedelta) -> CheckResult:
        ahead = self.engine.sql("SELECT exchange, symbol, trade_id, trade_ts FROM trades "
                                "WHERE epoch_us(trade_ts) > $limit ORDER BY ALL",
                                {"limit": int((self.now + skew).timestamp() * 1_000_000)})
        if ahead.num_rows:
            return CheckResult("future", "fail", f"{ahead.num_rows} trades are stamped after now + "
                                                 f"{_human(skew)}", _rows(ahead.slice(0, _SAMPLE)))
        return CheckResult("future", "ok", f"no trade is stamped after now + {_human(skew)} (clock skew)")

    def quarantine(self, quarantined: list[state.Quarantined]) -> CheckResult:
        if quarantined:
            return CheckResult("quarantine", "fail",
                               f"{len(quarantined)} raw file(s) quarantined: repair them, then "
                               "`schemahub transform --retry-quarantined`",
                               [q.model_dump(mode="json") for q in quarantined[:_SAMPLE]])
        return CheckResult("quarantine", "ok", "no quarantined raw files")

    def deep_reconciliation(self, cursors: dict[tuple[str, str], Cursor],
                            quarantined: list[state.Quarantined]) -> CheckResult:
        from schemahub.quality.deep import compare_raw_with_table

        return compare_raw_with_table(self.storage, self.engine, cursors, {q.key for q in quarantined})


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _subtract(ranges: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges minus other (merged) ranges."""
    out = []
    for a, b in ranges:
        start = a
        for c, d in minus:
            if d < start or c > b:
                continue
            if c > start:
                out.append((start, c - 1))
            start = max(start, d + 1)
        if start <= b:
            out.append((start, b))
    return out
