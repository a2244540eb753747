"""Transform throughput: raw JSONL -> committed Delta table (run: `python bench/transform.py`).

Side by side in one process, on the same raw files:
  (a) DuckDB's bare `COPY (SELECT ... FROM read_json(...)) TO 'x.parquet'` - the ceiling;
  (b) a naive path: json.loads per line, dicts, Arrow, Parquet - what simple pipelines do;
  ours: `schemahub transform` (mapping, validation, dedup, sort, Delta commit).
Then the incremental cost: with the table holding >= 10M trades, transform 100k new ones
and compare with the full rebuild; and storage: table bytes vs raw bytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from schemahub import pipeline
from schemahub.settings import Settings
from schemahub.transform.report import TransformOptions
from synth import raw_lake

COLUMNS = ("{'trade_id': 'VARCHAR', 'side': 'VARCHAR', 'size': 'VARCHAR', 'price': 'VARCHAR', "
           "'time': 'VARCHAR'}")


def duckdb_copy(paths: list[str], out: Path) -> float:
    con = duckdb.connect()
    started = time.perf_counter()
    con.execute(f"COPY (SELECT trade_id, side, size, price, time FROM read_json($files, "
                f"format = 'newline_delimited', columns = {COLUMNS}) WHERE trade_id IS NOT NULL) "
                f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)", {"files": paths})
    return time.perf_counter() - started


def naive(paths: list[str], out: Path) -> tuple[int, float]:
    started = time.perf_counter()
    rows = []
    for path in paths:
        with gzip.open(path, "rt") as fh:
            next(fh)  # header
            for line in fh:
                r = json.loads(line)
                rows.append({"trade_id": str(r["trade_id"]), "side": "sell" if r["side"] == "buy" else "buy",
                             "price": float(r["price"]), "quantity": float(r["size"]),
                             "trade_ts": datetime.fromisoformat(r["time"])})
    pq.write_table(pa.Table.from_pylist(rows), out, compression="zstd")
    return len(rows), time.perf_counter() - started


def transform(lake: Path, rebuild: bool) -> tuple[int, float]:
    started = time.perf_counter()
    report = pipeline.transform(Settings.load(str(lake)), TransformOptions(rebuild=rebuild))
    assert not report.needs_attention, report.to_dict()
    return report.rows_written, time.perf_counter() - started


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M trades instead of 10M (noisier)")
    args = parser.parse_args()
    products, per_product = (5, 200_000) if args.quick else (10, 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="schemahub-bench-"))
    try:
        lake = work / "lake"
        started = time.perf_counter()
        trades = raw_lake(lake, products=products, per_product=per_product)
        print(f"synthesized {trades:,} raw trades in {time.perf_counter() - started:.1f}s", flush=True)
        paths = sorted(str(p) for p in (lake / "raw").rglob("*.jsonl.gz"))
        gz_bytes = sum(Path(p).stat().st_size for p in paths)
        sample_files = paths[:: max(1, len(paths) // 200)]
        jsonl_bytes = sum(len(gzip.decompress(Path(p).read_bytes())) for p in sample_files)
        jsonl_bytes = int(jsonl_bytes * len(paths) / len(sample_files))

        ref_s = duckdb_copy(paths, work / "ref.parquet")
        sample = paths[: max(1, len(paths) // 20)]
        naive_rows, naive_s = naive(sample, work / "naive.parquet")
        rows, full_s = transform(lake, rebuild=True)
        table_bytes = size_of(lake / "table" / "trades")

        raw_lake(lake, products=products, per_product=10_000, start_index=per_product)
        new_rows, inc_s = transform(lake, rebuild=False)

        ours, ref, slow = rows / full_s, trades / ref_s, naive_rows / naive_s
        result = {
            "trades": trades, "raw_files": len(paths),
            "duckdb_copy_trades_per_s": round(ref), "naive_trades_per_s": round(slow),
            "ours_trades_per_s": round(ours), "ours_seconds": round(full_s, 2),
            "ours_vs_duckdb_copy": round(ref / ours, 2), "ours_vs_naive": round(ours / slow, 1),
            "incremental_rows": new_rows, "incremental_seconds": round(inc_s, 3),
            "incremental_share_of_rebuild": round(inc_s / full_s, 4),
            "raw_gzip_bytes_per_trade": round(gz_bytes / trades, 1),
            "raw_jsonl_bytes_per_trade": round(jsonl_bytes / trades, 1),
            "table_bytes_per_trade": round(table_bytes / rows, 1),
            "table_vs_raw_jsonl": round(table_bytes / jsonl_bytes, 3),
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
