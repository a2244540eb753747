"""The Python API side by side with reading the same table directly (`make bench`, or
`cd bench && ../.venv/bin/python api.py --rows 10000000` for a quick run).

A unified table of ROWS synthetic trades (bench/synth.py's generator, the query benchmark's
table: 3 exchanges x 12 symbols over DAYS days, one Delta commit per day). In this process,
best of 3 each:

  symbol-day    `lake.trades(symbol, start=day, end=day+1).to_polars()` vs
                `polars.scan_delta(table).filter(symbol, trade_date).sort(time).collect()`;
  whole table   `lake.trades(ordered=False).to_polars()` vs `polars.scan_delta(table).collect()`
                (and `deltalake.DeltaTable.to_pyarrow_table()`), every row;
  bars          `lake.bars(symbol, "1m")` over the whole range (every venue) vs the very same
                SQL text run by a bare DuckDB connection on a view of the table's Parquet files.

Targets (issue 16): the reads within 1.2x of polars/deltalake, the bars within 1.5x of bare DuckDB.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from deltalake import DeltaTable

import schemahub
from query import build, table_arguments
from synth import START

REPEATS = 3


def best(run: Callable[[], Any]) -> tuple[float, Any]:
    fastest, result = float("inf"), None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = run()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, result


def main() -> None:
    args = table_arguments(__doc__)
    with tempfile.TemporaryDirectory() as work:
        lake_dir = Path(work) / "lake"
        table_dir = lake_dir / "table" / "trades"
        build(table_dir, args.rows, args.days, args.symbols)
        lake = schemahub.open_lake(str(lake_dir), env={})
        symbol, day = "BTC-USD", (START + timedelta(days=args.days // 2)).date()
        results: dict[str, Any] = {"rows": args.rows, "days": args.days, "table_version": lake.version}

        one_day = lake.trades(symbol, start=day, end=day + timedelta(days=1))
        api_day_s, frame = best(one_day.to_polars)
        ref_day_s, ref = best(lambda: pl.scan_delta(str(table_dir)).filter(
            (pl.col("symbol") == symbol) & (pl.col("trade_date") == day)).sort(
            "trade_ts", "exchange", "trade_id").collect())
        assert frame.height == ref.height, (frame.height, ref.height)
        results |= {"symbol_day_rows": frame.height, "symbol_day_api_s": round(api_day_s, 4),
                    "symbol_day_polars_s": round(ref_day_s, 4),
                    "symbol_day_ratio": round(api_day_s / ref_day_s, 2)}

        api_all_s, everything = best(lambda: lake.trades(ordered=False).to_polars())
        ref_all_s, ref = best(lambda: pl.scan_delta(str(table_dir)).collect())
        delta_all_s, _ = best(lambda: DeltaTable(str(table_dir)).to_pyarrow_table())
        assert everything.height == ref.height
        results |= {"all_rows": everything.height, "all_rows_api_s": round(api_all_s, 2),
                    "all_rows_polars_s": round(ref_all_s, 2), "all_rows_deltalake_s": round(delta_all_s, 2),
                    "all_rows_ratio": round(api_all_s / ref_all_s, 2),
                    "all_rows_ratio_vs_deltalake": round(api_all_s / delta_all_s, 2)}
        del everything, ref

        bars = lake.bars(symbol, "1m")
        api_bars_s, table = best(bars.to_arrow)
        con = duckdb.connect()
        snapshot = lake.engine.snapshot
        assert snapshot is not None
        files = lake.engine.table.data_files(snapshot)  # the very files the API's view reads
        con.execute("SET VARIABLE files = $files", {"files": files})
        con.execute("CREATE VIEW trades AS SELECT * FROM read_parquet(getvariable('files'), "
                    "hive_partitioning = true, hive_types = {'exchange': VARCHAR, 'trade_date': DATE})")
        bare_s, bare = best(lambda: con.execute(bars.sql, bars.params).to_arrow_table())
        assert table.num_rows == bare.num_rows
        results |= {"bars": table.num_rows, "bars_api_s": round(api_bars_s, 3),
                    "bars_duckdb_s": round(bare_s, 3), "bars_ratio": round(api_bars_s / bare_s, 2)}
        lake.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
