"""Ingest throughput against the exchange simulator (run: `make bench` or `python bench/ingest.py`).

(a) Rate-limited: the simulator enforces Coinbase's 10 req/s (burst 15) per IP and adds
    ~200 ms latency. The ceiling is 10 x 1000 trades/s; we report sustained trades/s as a
    fraction of it, and the 429s we provoked (target: >= 0.95 and zero).
(b) Unlimited: no rate limit, ~5 ms latency. This measures the client's own ceiling on
    this machine, next to a reference run in the same process: bare httpx threads that
    only download the same pages (no parsing, no files, no checkpoints).

The simulator runs in a separate process (it must not share our GIL). Checkpoints are
seeded at the first trade of each product so the figures measure forward ingestion, not
the cold-start search.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from schemahub import pipeline
from schemahub.config import Settings
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore
from schemahub.infra.storage import LocalStorage
from schemahub.ingest.engine import IngestOptions
from schemahub.simulator.server import DEFAULT_PRODUCTS

TRADABLE = [p for p in DEFAULT_PRODUCTS if p.status == "online" and not p.cancel_only]


def start_simulator(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "schemahub", "simulate", "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("simulator listening on "):
        proc.kill()
        raise SystemExit(f"simulator failed to start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


def seed_checkpoints(lake: Path) -> None:
    store = CheckpointStore(LocalStorage(lake))
    now = datetime.now(UTC)
    for spec in TRADABLE:
        store.commit(Checkpoint(exchange="coinbase", symbol=spec.symbol, start_after_id=spec.first_id - 1,
                                last_trade_id=spec.first_id - 1, last_trade_time=None, updated_at=now,
                                run_id="bench", lease_token=0), None)


def run_ingest(url: str, lake: Path, *, unlimited: bool,
               chunks: int | None = None) -> tuple[int, float, dict[str, float]]:
    seed_checkpoints(lake)
    settings = Settings.load(str(lake), env={"SCHEMAHUB_COINBASE_URL": url})
    options = IngestOptions(workers=4, chunk_concurrency=chunks or 5)
    started = time.perf_counter()
    report = pipeline.ingest(settings, "coinbase", [p.symbol for p in TRADABLE], options,
                             unlimited=unlimited)
    elapsed = time.perf_counter() - started
    assert report.ok, report.to_dict()
    trades = sum(p.trades for p in report.products)
    requests = sum(p.stats.snapshot()["requests"] for p in report.products)
    return trades, elapsed, {"requests": requests}


def sim_stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/_sim/stats").json()  # type: ignore[no-any-return]


def reference_download(url: str, threads: int, pages_per_product: int) -> tuple[int, float]:
    """Bare httpx threads fetching the same 1000-trade pages: the transport ceiling."""
    jobs = []
    for spec in TRADABLE:
        count = min(pages_per_product, spec.history // 1000)
        jobs += [(spec.symbol, spec.first_id + 1000 * (k + 1)) for k in range(count)]
    with httpx.Client(base_url=url, limits=httpx.Limits(max_connections=threads)) as client:
        def fetch(job: tuple[str, int]) -> int:
            symbol, cursor = job
            response = client.get(f"/products/{symbol}/trades", params={"after": cursor + 1, "limit": 1000})
            return len(response.content) and 1000
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            trades = sum(pool.map(fetch, jobs))
        return trades, time.perf_counter() - started


def scenario_a(scale: float) -> dict[str, float]:
    proc, url = start_simulator("--latency", "0.2", "--rate", "10", "--burst", "15",
                                "--history-scale", str(scale))
    try:
        with tempfile.TemporaryDirectory() as lake:
            trades, elapsed, info = run_ingest(url, Path(lake), unlimited=False)
        stats = sim_stats(url)
    finally:
        proc.terminate()
        proc.wait()
    rate = trades / elapsed
    return {"trades": trades, "seconds": round(elapsed, 2), "trades_per_s": round(rate),
            "fraction_of_ceiling": round(rate / 10_000, 3), "requests": info["requests"],
            "429s": stats.get("429", 0)}


def scenario_b(scale: float) -> dict[str, float]:
    proc, url = start_simulator("--latency", "0.005", "--no-rate-limit", "--history-scale", str(scale))
    try:
        httpx.get(f"{url}/_sim/warm", timeout=600)  # serialize every trade before timing
        ref_trades, ref_elapsed = reference_download(url, threads=16, pages_per_product=10**9)
        with tempfile.TemporaryDirectory() as lake:
            trades, elapsed, _ = run_ingest(url, Path(lake), unlimited=True, chunks=8)
    finally:
        proc.terminate()
        proc.wait()
    ours, reference = trades / elapsed, ref_trades / ref_elapsed
    return {"trades": trades, "seconds": round(elapsed, 2), "trades_per_s": round(ours),
            "reference_download_trades_per_s": round(reference),
            "ratio_to_reference": round(ours / reference, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller streams (a smoke run, noisier)")
    parser.add_argument("--only", choices=["a", "b"], help="run one scenario")
    args = parser.parse_args()
    results = {}
    if args.only in (None, "a"):
        results["a_rate_limited"] = scenario_a(0.5 if args.quick else 1.7)
        print(json.dumps({"a_rate_limited": results["a_rate_limited"]}), flush=True)
    if args.only in (None, "b"):
        results["b_unlimited"] = scenario_b(2.0 if args.quick else 10.0)
        print(json.dumps({"b_unlimited": results["b_unlimited"]}), flush=True)


if __name__ == "__main__":
    main()
