"""Transform and query on an S3 lake (moto server) beside the same work on a local lake.

Run: `cd bench && ../.venv/bin/python cloud.py` (part of `make bench`).

One synthetic raw lake (Coinbase wire format, as ingest writes it) is built locally and
copied object for object into a bucket on a moto server running in its own process
(tests/moto_server.py: S3's API over HTTP on loopback). Then, in this process:

  transform  - `schemahub transform --rebuild` on each lake: trades/s, and S3 / local;
  query      - the same queries through `schemahub query`'s engine on each table: seconds,
               and S3 / local.

moto is not S3: it is a single Python process answering every request with ~ms of CPU,
where S3 has ~10-30 ms of latency but scales out. The ratios show what the object-store
path costs in requests (how many round trips a stage makes), not what AWS will measure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from schemahub import pipeline
from schemahub.settings import OBJECT_STORE_FILE_TRADES, Settings
from schemahub.transform.report import TransformOptions
from synth import raw_lake

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "bench", "bench-secret"
QUERIES = {
    "count": "SELECT count(*) FROM trades",
    "daily_volume": "SELECT trade_date, symbol, sum(quantity) AS volume, count(*) AS n FROM trades "
                    "GROUP BY ALL",
    "one_symbol_bars": "SELECT epoch_us(trade_ts) // 60000000 AS minute, min(price), max(price), "
                       "sum(quantity) FROM trades WHERE symbol = 'SOL-USD' GROUP BY 1 ORDER BY 1",
    "point_lookup": "SELECT * FROM trades WHERE symbol = 'ETH-USD' AND trade_id = '1000000500'",
}


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "moto_server.py"), "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto_server did not start")


def s3_settings(endpoint: str, bucket: str, table: str) -> Settings:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "SCHEMAHUB_LOCKS": f"dynamodb://{table}"}
    return Settings.load(f"s3://{bucket}/lake", env=env)


def copy_to_s3(local: Path, endpoint: str, bucket: str, table: str) -> None:
    import boto3

    from schemahub.cloud import lock_table_definition

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                      aws_secret_access_key=SECRET)
    s3.create_bucket(Bucket=bucket)
    for path in sorted(p for p in local.rglob("*") if p.is_file() and ".tmp" not in p.parts):
        s3.put_object(Bucket=bucket, Key=f"lake/{path.relative_to(local).as_posix()}", Body=path.read_bytes())
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                 aws_secret_access_key=SECRET).create_table(**lock_table_definition(table))


def transform(settings: Settings) -> tuple[int, float]:
    started = time.perf_counter()
    report = pipeline.transform(settings, TransformOptions(rebuild=True))
    assert not report.needs_attention, report.to_dict()
    return report.rows_written, time.perf_counter() - started


def requests(endpoint: str, reset: bool = False) -> dict[str, int]:
    """Requests the moto server answered since the last reset (tests/moto_server.py counts them)."""
    answer = httpx.post(f"{endpoint}/_requests") if reset else httpx.get(f"{endpoint}/_requests")
    counts: dict[str, int] = answer.json()
    return counts


def counted_transform(settings: Settings, endpoint: str) -> tuple[int, float, dict[str, int]]:
    requests(endpoint, reset=True)
    rows, seconds = transform(settings)
    return rows, seconds, requests(endpoint)


def query_times(settings: Settings, repeats: int) -> dict[str, float]:
    engine = pipeline.query_engine(settings)
    try:
        times = {}
        for name, sql in QUERIES.items():
            engine.sql(sql)  # warm: extension loaded, log read once
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                engine.sql(sql)
                best = min(best, time.perf_counter() - started)
            times[name] = best
        return times
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k trades instead of 1M")
    args = parser.parse_args()
    products, per_product = (4, 50_000) if args.quick else (5, 200_000)
    work = Path(tempfile.mkdtemp(prefix="schemahub-bench-cloud-"))
    moto, endpoint = start_moto()
    try:
        result: dict[str, object] = {}
        # A page per raw file (a local lake's layout, and the seed's), then the bigger files
        # ingest gathers pages into on an object store (SCHEMAHUB_RAW_FILE_TRADES).
        for name, per_file in (("page_files", 1000), ("gathered_files", OBJECT_STORE_FILE_TRADES)):
            local = work / name
            trades = raw_lake(local, products=products, per_product=per_product, per_file=per_file)
            files = sum(1 for _ in (local / "raw").rglob("*.jsonl.gz"))
            bucket = f"bench-{name.replace('_', '-')}"
            copy_to_s3(local, endpoint, bucket, f"{bucket}-locks")
            remote = s3_settings(endpoint, bucket, f"{bucket}-locks")
            rows_local, local_s = transform(Settings.load(str(local)))
            rows_s3, s3_s, counts = counted_transform(remote, endpoint)
            assert rows_local == rows_s3 == trades
            result[name] = {
                "trades": trades, "raw_files": files, "trades_per_file": per_file,
                "transform_local_trades_per_s": round(trades / local_s),
                "transform_s3_trades_per_s": round(trades / s3_s),
                "transform_s3_vs_local": round(local_s / s3_s, 3),
                "s3_requests": counts, "s3_gets_per_raw_file": round(counts.get("GET raw", 0) / files, 2),
            }
        here, remote = Settings.load(str(work / "page_files")), s3_settings(endpoint, "bench-page-files",
                                                                             "bench-page-files-locks")
        local_q, s3_q = query_times(here, 3), query_times(remote, 3)
        result.update({
            "query_seconds_local": {k: round(v, 4) for k, v in local_q.items()},
            "query_seconds_s3": {k: round(v, 4) for k, v in s3_q.items()},
            "query_s3_slowdown": {k: round(s3_q[k] / local_q[k], 1) for k in QUERIES},
        })
        print(json.dumps(result, indent=2))
    finally:
        moto.terminate()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
