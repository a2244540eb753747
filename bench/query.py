"""Query speed on the unified Delta table vs the layout ceiling (run: `python bench/query.py`).

Builds >= 50M synthetic trades (3 exchanges x 12 symbols, 32 days) as SchemaHub writes
them: one Delta commit per day, partitioned by exchange and trade_date, rows sorted by
symbol then trade_ts, then compacted. The ceiling is ONE Parquet file holding the same
rows optimally sorted by (symbol, trade_ts). Each query runs, in the same process, on the
`trades` view of `schemahub query` (its QueryEngine), on DuckDB's `delta_scan` of the
same table (what that view used to be), and on the ceiling - each through a connection
with the same settings; best of 5.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
from deltalake import DeltaTable, write_deltalake

from schemahub.infra.duck import connect
from schemahub.query.engine import QueryEngine
from schemahub.table.delta import TradesTable, compact, writer_properties
from schemahub.transform.schema import PARTITION_BY, SCHEMA
from synth import START, unified_sql

DAY_US = 86_400_000_000
REPEATS = 5


def table_arguments(doc: str | None) -> argparse.Namespace:
    """The command line of a benchmark over the synthetic table: --rows, --days, --symbols."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--symbols", type=int, default=12)
    return parser.parse_args()


def build(table_dir: Path, rows: int, days: int, symbols: int) -> None:
    con = connect()
    sql, params = unified_sql(rows, symbols, days)
    per_day = rows // days
    table = TradesTable(str(table_dir)).create()
    for day in range(days):
        lo = params["start_us"] + day * DAY_US
        day_sql = (f"SELECT *, CAST(trade_ts AS DATE) AS trade_date FROM ({sql}) "
                   f"WHERE epoch_us(trade_ts) >= {lo} AND epoch_us(trade_ts) < {lo + DAY_US} "
                   "ORDER BY exchange, symbol, trade_ts")
        # Row i trades at start + (i // symbols) * step (+ < 1 ms): generate only the rows
        # around this day instead of all of them for every day.
        first_tick, end_tick = day * DAY_US // params["step_us"], (day + 1) * DAY_US // params["step_us"]
        params_of_day = {**params, "first_row": max(0, (first_tick - 1) * symbols),
                         "end_row": min(rows, (end_tick + 1) * symbols)}
        rows_of_day = con.execute(day_sql, params_of_day).to_arrow_table().select(SCHEMA.names).cast(SCHEMA)
        write_deltalake(table, rows_of_day, partition_by=PARTITION_BY, mode="append",
                        writer_properties=writer_properties())
        table = TradesTable(str(table_dir)).load()  # type: ignore[assignment]
        print(f"  day {day + 1}/{days}: ~{per_day:,} rows", flush=True)


def timed(con: object, sql: str, params: dict[str, object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        con.execute(sql, params).fetchall()  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - started)
    return best


def files_scanned(con: object, sql: str, params: dict[str, object]) -> str:
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN ANALYZE " + sql, params).fetchall())  # type: ignore[attr-defined]
    found = re.findall(r"Scanning Files: (\d+)/(\d+)", plan)
    if found:
        return ", ".join(f"{a}/{b}" for a, b in found)
    read = re.findall(r"Total Files Read: (\d+)", plan)
    return ", ".join(f"{n}/{n}" for n in read) or "none (answered from cached footers)"


def _first_count(open_session: Callable[[], duckdb.DuckDBPyConnection]) -> float:
    started = time.perf_counter()
    con = open_session()
    con.execute("SELECT count(*) FROM trades").fetchall()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def view_over(source: str) -> duckdb.DuckDBPyConnection:
    """A connection like the engine's (same settings) whose `trades` view reads ``source``."""
    con = connect()
    con.execute("SET parquet_metadata_cache = true")
    con.execute(f"CREATE VIEW trades AS SELECT * FROM {source}")
    return con


QUERIES = {
    "count": "SELECT count(*) FROM trades",
    "bars_one_symbol_day": """
        SELECT epoch_us(trade_ts) // 60000000 AS minute, arg_min(price, trade_ts) AS open, max(price) AS high,
               min(price) AS low, arg_max(price, trade_ts) AS close, sum(quantity) AS volume,
               sum(price * quantity) / sum(quantity) AS vwap, count(*) AS trades
        FROM trades WHERE exchange = 'coinbase' AND symbol = 'BTC-USD' AND trade_date = $day
        GROUP BY minute ORDER BY minute""",
    "daily_vwap_everything": """
        SELECT trade_date, exchange, symbol, sum(price * quantity) / sum(quantity) AS vwap
        FROM trades GROUP BY ALL""",
    "duplicate_check": """
        SELECT exchange, symbol, trade_id, count(*) FROM trades GROUP BY ALL HAVING count(*) > 1""",
    "one_hour_by_trade_ts_only": """
        SELECT count(*), avg(price) FROM trades
        WHERE trade_ts >= $hour_start AND trade_ts < $hour_end""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_400_000)
    parser.add_argument("--days", type=int, default=32)
    parser.add_argument("--keep", type=Path, help="build here and keep it (reuse on the next run)")
    parser.add_argument("--zorder", action="store_true",
                        help="also measure a Z-ordered (symbol, trade_ts) copy of the table")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="schemahub-query-"))
    table_dir, ceiling = work / "trades", work / "ceiling.parquet"
    try:
        if not (table_dir / "_delta_log").exists():
            started = time.perf_counter()
            build(table_dir, args.rows, args.days, symbols=36)
            delta = DeltaTable(str(table_dir))
            result = compact(delta, target_size=256 * 1024**2, zorder=False, vacuum=True, retain_hours=1)
            print(f"built and compacted in {time.perf_counter() - started:.0f}s "
                  f"({result.files_removed} -> {result.files_added} files)", flush=True)
        con = connect()
        if not ceiling.exists():
            con.execute(f"COPY (SELECT * FROM delta_scan('{table_dir}') ORDER BY symbol, trade_ts) "
                        f"TO '{ceiling}' (FORMAT parquet, COMPRESSION zstd)")
        day = (START.date().toordinal() + args.days // 2)
        from datetime import date, timedelta

        the_day = date.fromordinal(day)
        hour_start = START + timedelta(days=args.days // 2, hours=13)
        params_for: dict[str, dict[str, object]] = {
            "bars_one_symbol_day": {"day": the_day},
            "one_hour_by_trade_ts_only": {"hour_start": hour_start,
                                          "hour_end": hour_start + timedelta(hours=1)},
        }
        zordered = work / "trades_zorder"
        if args.zorder and not (zordered / "_delta_log").exists():
            shutil.copytree(table_dir, zordered)
            started = time.perf_counter()
            compact(DeltaTable(str(zordered)), target_size=256 * 1024**2, zorder=True, vacuum=False,
                    retain_hours=168)
            print(f"z-ordered a copy in {time.perf_counter() - started:.0f}s", flush=True)
        rows = con.execute(f"SELECT count(*) FROM delta_scan('{table_dir}')").fetchone()[0]  # type: ignore[index]
        results = {"rows": rows, "table_files": len(DeltaTable(str(table_dir)).file_uris()), "queries": {}}
        views = {"table": QueryEngine(TradesTable(str(table_dir))).con,
                 "delta_scan": view_over(f"delta_scan('{table_dir}')"),
                 "ceiling": view_over(f"read_parquet('{ceiling}')")}
        if args.zorder:
            views["zorder"] = QueryEngine(TradesTable(str(zordered))).con
        for name, sql in QUERIES.items():
            params = params_for.get(name, {})
            seconds = {view: timed(view_con, sql, params) for view, view_con in views.items()}
            entry: dict[str, object] = {f"{view}_s": round(s, 4) for view, s in seconds.items()}
            entry["ratio"] = round(seconds["table"] / seconds["ceiling"], 2)
            entry["files_scanned"] = files_scanned(views["table"], sql, params)
            results["queries"][name] = entry
            print(name, entry, flush=True)
        # What a one-shot `schemahub query` pays: open a session (for the table: resolve the
        # snapshot) and run its first query, nothing cached yet.
        opens = {"table": lambda: QueryEngine(TradesTable(str(table_dir))).con,
                 "ceiling": lambda: view_over(f"read_parquet('{ceiling}')")}
        cold = {name: min(_first_count(open_session) for _ in range(REPEATS))
                for name, open_session in opens.items()}
        results["cold_open_and_count_s"] = {name: round(s, 4) for name, s in cold.items()}
        print("cold open + count(*)", results["cold_open_and_count_s"], flush=True)
        # One Parquet file answers count(*) from its footer when the query is planned (the plan
        # is a constant); a table of several files has to be scanned.
        plan = views["ceiling"].execute("EXPLAIN SELECT count(*) FROM trades").fetchall()[0][1]
        results["ceiling_count_is_a_constant"] = "READ_PARQUET" not in plan
        print(json.dumps(results, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
