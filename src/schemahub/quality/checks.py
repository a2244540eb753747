"""Data-quality checks over the unified table, the raw lake and the ingest state.

Each check returns a ``CheckResult`` (ok / fail / skip with a one-line summary and
details). ``check`` exits 1 when any check fails.

* duplicates      - rows sharing (exchange, symbol, trade_id)
* gaps            - per product, the table holds every trade id of its transformed window
                    except those the exchange skipped (the ingest gap log). Ids missing for
                    a known reason - inside a quarantined raw file, or awaiting a repair -
                    still fail (they are missing) but say what to do; the rest are
                    unexplained. More rows than the window allows is a surplus. Products
                    whose ids are derived (Kraken rows without one) have no sequence and
                    are skipped. (With --deep, every raw id is compared with the table.)
* freshness       - newest trade per product against a threshold (plus two days for a venue
                    whose trades arrive only in the next day's archive file)
* values          - non-positive prices or quantities
* future          - trades stamped in the future (beyond a clock-skew allowance)
* quarantine      - raw files the transform could not use
* state           - lake state files that cannot be read (checkpoints, gap logs,
                    quarantine records, repair logs, bans), each with its recovery
* certificates    - certified days recomputed from the table (a sample; all with --deep):
                    a content hash or count that differs is tampering or corruption
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa

from schemahub.errors import SchemahubError
from schemahub.idranges import clip, intersect, merge, size, subtract
from schemahub.infra.checkpoints import GapLogStore, RepairStore
from schemahub.infra.storage import Storage
from schemahub.metrics.runs import RunProduct, RunRecord
from schemahub.quality import state_files
from schemahub.quality.options import CheckOptions
from schemahub.query.engine import QueryEngine
from schemahub.raw.layout import parse_key
from schemahub.sources.base import TradeSource
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


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


class Checker:
    def __init__(self, storage: Storage, table: TradesTable, engine: QueryEngine,
                 now: datetime | None = None) -> None:
        self.storage = storage
        self.table = table
        self.engine = engine
        self.now = now or datetime.now(UTC)
        self.unexplained: dict[tuple[str, str], list[tuple[int, int]]] = {}
        """Per product, every id range the gaps check found missing for no known reason."""

    def run(self, options: CheckOptions) -> list[CheckResult]:
        # The cursors must describe the very version the engine's queries read: a transform
        # committing meanwhile would otherwise look like missing rows.
        delta = self.engine.snapshot
        quarantined = state.all_quarantined(self.storage)
        if delta is None:  # nothing to compare yet, but the lake's state can still be broken
            return [CheckResult("table", "fail", f"no table at {self.table.uri}: run `schemahub transform`"),
                    self.quarantine(quarantined), self.readable_state()]
        products = self._products()
        cursors = self.table.cursors(delta, products)
        derived = self.table.cursors(delta, products, derived=True)
        results = [
            self.duplicates(),
            self.gaps_and_reconciliation(cursors, quarantined, derived),
            self.freshness(options.freshness),
            self.values(),
            self.future(options.future_skew),
            self.quarantine(quarantined),
            self.readable_state(),
            self.certificates(options.deep),
        ]
        if options.deep:
            windows: dict[tuple[str, str], list[Cursor]] = {}
            for found in (cursors, derived):
                for key, cursor in found.items():
                    windows.setdefault(key, []).append(cursor)
            results.append(self.deep_reconciliation(windows, quarantined))
        return results

    def unexplained_gaps(self) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """What ``repair`` fetches again: ids missing from the table's windows that no gap log,
        quarantined file or pending repair explains."""
        delta = self.engine.snapshot
        if delta is not None:
            products = self._products()
            cursors = self.table.cursors(delta, products)
            self.gaps_and_reconciliation(cursors, state.all_quarantined(self.storage))
        return self.unexplained

    def certificates(self, deep: bool) -> CheckResult:
        from schemahub.quality import certificates

        store = certificates.Certificates(self.storage)
        table = store.load()
        if table is None:
            return CheckResult("certificates", "skip", "no certificates yet (`schemahub certify`)")
        bad, checked = certificates.verify(self.engine, certificates.rows_of(store.arrow(table)), deep)
        if bad:
            summary = f"{len(bad)} of {checked} certified days no longer match (tampering or corruption)"
            return CheckResult("certificates", "fail", summary, bad)
        scope = "every certified day" if deep else f"{checked} certified days (a sample; --deep: all)"
        return CheckResult("certificates", "ok", f"{scope}: content hash and count as certified")

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
                                quarantined: list[state.Quarantined],
                                derived_cursors: dict[tuple[str, str], Cursor] | None = None) -> CheckResult:
        gap_logs = GapLogStore(self.storage)
        quarantined_ranges = self._quarantined_ranges(quarantined)
        repairing = self._repair_ranges()
        details: list[dict[str, Any]] = []
        for (exchange, symbol), window in sorted((derived_cursors or {}).items()):
            # positions, not a sequence: nothing to count against
            details.append({"exchange": exchange, "symbol": symbol,
                            "window": [window.from_id + 1, window.through_id],
                            "skipped": "derived ids (rows without a trade id) have no sequence"})
        missing_products = surplus_products = 0
        for (exchange, symbol), cursor in sorted(cursors.items()):
            lo, hi = cursor.from_id + 1, cursor.through_id
            if hi < lo:
                continue
            if not _dense_ids(exchange):
                details.append({"exchange": exchange, "symbol": symbol, "window": [lo, hi],
                                "skipped": "the venue's ids are not a per-product sequence"})
                continue
            stats = _rows(self.engine.sql(
                "SELECT count(*) AS n FROM trades WHERE exchange = $exchange AND symbol = $symbol "
                "AND TRY_CAST(trade_id AS BIGINT) BETWEEN $lo AND $hi",
                {"exchange": exchange, "symbol": symbol, "lo": lo, "hi": hi}))[0]
            log = gap_logs.load(exchange, symbol)
            known = merge(clip(((g.first_id, g.last_id) for g in log.value.gaps) if log else [], lo, hi))
            expected = (hi - lo + 1) - size(known)
            row: dict[str, Any] = {"exchange": exchange, "symbol": symbol, "window": [lo, hi],
                                   "rows": stats["n"], "expected": expected, "known_gaps": size(known)}
            if stats["n"] < expected:
                missing = subtract(self._missing_ids(exchange, symbol, lo, hi), known)
                in_quarantine = merge(clip(quarantined_ranges.get((exchange, symbol), []), lo, hi))
                awaiting = merge(clip(repairing.get((exchange, symbol), []), lo, hi))
                explained = merge(in_quarantine + awaiting)
                unexplained = subtract(missing, explained)
                self.unexplained[(exchange, symbol)] = unexplained
                row.update(missing_ids=size(missing),
                           quarantined_ids=size(intersect(missing, in_quarantine)),
                           repairing_ids=size(intersect(missing, awaiting)),
                           unexplained_ids=size(unexplained), unexplained_gaps=unexplained[:_SAMPLE])
                missing_products += 1
            elif stats["n"] > expected:
                row["surplus_rows"] = stats["n"] - expected
                surplus_products += 1
            details.append(row)
        if not details:
            return CheckResult("gaps", "skip", "no transformed product windows yet")
        if missing_products or surplus_products:
            return CheckResult("gaps", "fail", _gaps_summary(details, missing_products, surplus_products),
                               details)
        total_known = sum(d.get("known_gaps", 0) for d in details)
        return CheckResult("gaps", "ok", f"every window complete ({total_known} ids skipped by the exchange, "
                                         "all logged); table == raw for every product", details)

    def _repair_ranges(self) -> dict[tuple[str, str], list[tuple[int, int]]]:
        from schemahub.infra.checkpoints import RepairLog

        ranges: dict[tuple[str, str], list[tuple[int, int]]] = {}
        store = RepairStore(self.storage)
        for _, exchange, symbol in store.listed():
            try:
                stored = store.load(exchange, symbol)
            except SchemahubError:
                continue  # the state check reports it
            log: RepairLog | None = stored.value if stored else None
            for r in log.ranges if log else []:
                ranges.setdefault((exchange, symbol), []).append((r.first_id, r.last_id))
        return ranges

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
            if lag > threshold + _publication_lag(row["exchange"]):
                stale.append(row)
        if stale:
            return CheckResult("freshness", "fail", f"{len(stale)} product(s) have no trade in the last "
                                                    f"{_human(threshold)}", stale)
        lagged = sorted({row["exchange"] for row in newest if _publication_lag(row["exchange"])})
        extra = f" ({', '.join(lagged)}: 2 days more, trades come in the next day's file)" if lagged else ""
        return CheckResult("freshness", "ok", f"every product has a trade within {_human(threshold)}{extra}",
                           newest)

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
                               f"{len(quarantined)} raw file(s) quarantined: `schemahub repair` releases "
                               "them, fetches their trades again and transforms them",
                               [q.model_dump(mode="json") for q in quarantined[:_SAMPLE]])
        return CheckResult("quarantine", "ok", "no quarantined raw files")

    def readable_state(self) -> CheckResult:
        broken = state_files.unreadable(self.storage)
        if broken:
            return CheckResult("state", "fail", f"{len(broken)} lake state file(s) cannot be read; each "
                                                "detail says how to recover", [vars(b) for b in broken])
        return CheckResult("state", "ok", "every checkpoint, gap log, quarantine record, repair log and "
                                          "ban record reads")

    def deep_reconciliation(self, windows: dict[tuple[str, str], list[Cursor]],
                            quarantined: list[state.Quarantined]) -> CheckResult:
        from schemahub.quality.deep import compare_raw_with_table

        return compare_raw_with_table(self.storage, self.engine, windows, {q.key for q in quarantined})


def _connector(exchange: str) -> type[TradeSource] | None:
    """The venue's connector class (None: an exchange no longer registered)."""
    from schemahub.sources.registry import source_class

    try:
        return source_class(exchange)
    except SchemahubError:
        return None


def _publication_lag(exchange: str) -> timedelta:
    """How far a venue's newest trade trails by design: two days where trades arrive only in
    the next day's archive file (Bybit), nothing otherwise."""
    connector = _connector(exchange)
    return timedelta(days=2) if connector is not None and connector.paging == "archive" else timedelta(0)


def _dense_ids(exchange: str) -> bool:
    """Whether the venue's ids count its trades (an exchange no longer registered: assume so)."""
    connector = _connector(exchange)
    return connector is None or connector.dense_ids


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, span_s in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % span_s == 0 and seconds >= span_s:
            return f"{seconds // span_s}{unit}"
    return f"{seconds}s"


def _gaps_summary(details: list[dict[str, Any]], missing: int, surplus: int) -> str:
    parts = []
    if missing:
        counts = {k: sum(d.get(k, 0) for d in details)
                  for k in ("unexplained_ids", "quarantined_ids", "repairing_ids")}
        reasons = [f"{counts['unexplained_ids']} unexplained"]
        if counts["quarantined_ids"]:
            reasons.append(f"{counts['quarantined_ids']} in quarantined files (`schemahub quarantine "
                           "release`, then `schemahub repair`)")
        if counts["repairing_ids"]:
            reasons.append(f"{counts['repairing_ids']} awaiting repair (`schemahub repair`, then "
                           "`schemahub transform`)")
        parts.append(f"{missing} product(s) miss trades: {', '.join(reasons)}")
    if surplus:
        rows = sum(d.get("surplus_rows", 0) for d in details)
        parts.append(f"{surplus} product(s) hold {rows} more rows than their window has trades (a surplus: "
                     "see the duplicates check)")
    return "; ".join(parts)


def record_checks(record: RunRecord, results: list[CheckResult]) -> None:
    """A check run's share of its run record."""
    record.details["checks"] = [{"name": r.name, "status": r.status, "summary": r.summary} for r in results]
    if any(r.status == "fail" for r in results):
        record.status = "failed"
    by_product: dict[tuple[str, str], RunProduct] = {}
    for result in results:
        for row in result.details:
            if "exchange" not in row or "symbol" not in row:
                continue
            key = (row["exchange"], row["symbol"])
            product = by_product.setdefault(key, RunProduct(exchange=key[0], symbol=key[1], status="ok"))
            if result.name == "gaps" and "rows" in row:
                product.unexplained_gaps = int(row.get("unexplained_ids", 0))
                if row.get("missing_ids") or row.get("surplus_rows"):
                    product.status = "failed"
    record.products = list(by_product.values())
