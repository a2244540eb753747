"""Certifying days, side by side with a bare scan (`make bench`, or `cd bench && ../.venv/bin/python
certify.py --rows 5000000` for a quick run).

A unified table of ROWS synthetic trades (bench/synth.py's deterministic generator, the
query benchmark's table) over DAYS days and SYMBOLS products, with checkpoints that close
every day. Then, in this process:

  scan         the certificates' aggregates (count, ids, volume, VWAP, longest silence,
               content hash) as one bare DuckDB GROUP BY over every day: the reference;
  first        `certify` over every closed day (the same aggregates, plus statuses and
               one MERGE into table/completeness);
  incremental  one day of one product gains rows (a transform appended them); `certify`
               again computes only that (exchange, day) partition.

Targets (issue 15): first within 1.5x of the scan, incremental < 5% of the first.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from query import build, table_arguments
from schemahub import pipeline
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore
from schemahub.infra.storage import LocalStorage
from schemahub.quality.certificates import DAY_STATS_SQL
from schemahub.settings import Settings
from schemahub.table.delta import TradesTable
from synth import START


def close_every_day(lake: Path, days: int) -> None:
    """Checkpoints saying each product was ingested from before its first day to past its last."""
    storage = LocalStorage(lake)
    table = TradesTable(str(lake / "table" / "trades")).load()
    assert table is not None
    products = pipeline.query_engine(Settings.load(str(lake), env={})).sql(
        "SELECT DISTINCT exchange, symbol FROM trades ORDER BY ALL").to_pylist()
    store = CheckpointStore(storage)
    for row in products:
        store.commit(Checkpoint(exchange=row["exchange"], symbol=row["symbol"], start_after_id=0,
                                last_trade_id=10**9, first_trade_time=START, covered_since=START,
                                last_trade_time=START + timedelta(days=days), updated_at=START,
                                run_id="bench", lease_token=0), None)


def main() -> None:
    args = table_arguments(__doc__)
    with tempfile.TemporaryDirectory() as work:
        lake = Path(work) / "lake"
        build(lake / "table" / "trades", args.rows, args.days, args.symbols)
        close_every_day(lake, args.days)
        settings = Settings.load(str(lake), env={})

        engine = pipeline.query_engine(settings)
        exchanges = [r["exchange"] for r in engine.sql("SELECT DISTINCT exchange FROM trades").to_pylist()]
        days = [(START + timedelta(days=d)).date() for d in range(args.days)]
        started = time.perf_counter()
        scanned = sum(engine.sql(DAY_STATS_SQL, {"exchange": e, "days": days}).num_rows for e in exchanges)
        scan_s = time.perf_counter() - started
        engine.close()

        started = time.perf_counter()
        first = pipeline.certify(settings, cross_check=False)  # the table's work alone
        first_s = time.perf_counter() - started

        table = TradesTable(str(lake / "table" / "trades")).load()
        assert table is not None
        one_day = pipeline.query_engine(settings).sql(
            "SELECT * FROM trades WHERE trade_date = $day ORDER BY symbol LIMIT 1000",
            {"day": days[len(days) // 2]})
        new_ids = pa.array([f"9{i:09d}" for i in range(one_day.num_rows)], pa.string())
        one_day = one_day.set_column(one_day.schema.get_field_index("trade_id"), "trade_id", new_ids)
        write_deltalake(table, one_day, mode="append", partition_by=["exchange", "trade_date"])
        started = time.perf_counter()
        again = pipeline.certify(settings, cross_check=False)
        incremental_s = time.perf_counter() - started

    print(json.dumps({
        "rows": args.rows, "days": args.days, "symbols": args.symbols, "product_days": scanned,
        "scan_s": round(scan_s, 2), "first_certify_s": round(first_s, 2),
        "first_vs_scan": round(first_s / scan_s, 2), "first_computed": first.computed,
        "incremental_s": round(incremental_s, 2), "incremental_vs_first": round(incremental_s / first_s, 3),
        "incremental_computed": again.computed, "incremental_unchanged": again.unchanged,
    }, indent=2))


if __name__ == "__main__":
    main()
