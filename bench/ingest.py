"""Ingest throughput against the exchange simulators (run: `make bench` or `python bench/ingest.py`).

(a) Rate-limited, per exchange: each simulator enforces that exchange's documented public
    limit per IP and adds ~200 ms latency. We report sustained trades/s as a fraction of the
    exchange's ceiling, and the 429/418 answers we provoked (target: >= 0.9 and zero):
      coinbase  10 req/s x 1000 trades                        = 10,000 trades/s
      binance   6000 weight/min / 25 per historicalTrades page
                x 1000 trades                                 =  4,000 trades/s
      kraken    ~1 req/s x 1000 trades                        =  1,000 trades/s
      okx       20 req / 2 s x 100 trades                     =  1,000 trades/s
      bitfinex  15 req/min x 10,000 trades                    =  2,500 trades/s
    (Bybit has no REST history: it appears in (c) only.)
(b) Unlimited (Coinbase): no rate limit, ~5 ms latency. This measures the client's own
    ceiling on this machine, next to a reference run in the same process: bare httpx
    threads that only download the same pages (no parsing, no files, no checkpoints).

(c) Archive backfill, per venue with a bulk archive (Binance, OKX, Bybit): five days of
    history served as the venue's archive files, ingested with `--source archive`:
    trades/s and files/s (bounded by this machine, not by a published limit).

Each simulator runs in a separate process (it must not share our GIL). Id-paged products
get a checkpoint at their first trade so the figures measure forward ingestion, not the
cold-start search; Kraken pages forward by time from 2020.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from schemahub import pipeline
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore
from schemahub.infra.storage import LocalStorage
from schemahub.ingest.exchanges import IngestRequest
from schemahub.ingest.run import IngestOptions
from schemahub.settings import Settings
from schemahub.simulator.catalog import default_products
from schemahub.simulator.catalog import tradable as tradable_specs
from schemahub.simulator.market import ProductSpec
from schemahub.sources.archive import Period
from schemahub.sources.base import IdPagedSource, Product
from schemahub.sources.registry import list_exchanges, source_class, spec

SINCE_2020_US = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)


def tradable(exchange: str) -> list[ProductSpec]:
    return tradable_specs(default_products(exchange))


def start_simulator(exchange: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "schemahub", "simulate", "--exchange", exchange,
                             "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("simulator listening on "):
        proc.kill()
        raise SystemExit(f"simulator failed to start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


def seed_checkpoints(lake: Path, exchange: str, endpoint: str) -> None:
    store = CheckpointStore(LocalStorage(lake))
    now = datetime.now(UTC)
    for product in tradable(exchange):
        store.commit(Checkpoint(exchange=exchange, symbol=product.symbol, endpoint=endpoint,
                                start_after_id=product.first_id - 1, last_trade_id=product.first_id - 1,
                                last_trade_time=None, updated_at=now, run_id="bench", lease_token=0), None)


def run_ingest(exchange: str, url: str, lake: Path, *, unlimited: bool,
               chunks: int | None = None) -> tuple[int, float, dict[str, float]]:
    cls = source_class(exchange)
    if issubclass(cls, IdPagedSource):
        seed_checkpoints(lake, exchange, cls.endpoints[0])
    settings = Settings.load(str(lake), env={f"SCHEMAHUB_{exchange.upper()}_URL": url})
    options = IngestOptions(since_us=SINCE_2020_US, workers=4, chunk_concurrency=chunks or 5)
    request = IngestRequest([exchange], [p.symbol for p in tradable(exchange)], lambda _: options,
                            unlimited=unlimited)
    started = time.perf_counter()
    [report] = pipeline.ingest(settings, request)
    elapsed = time.perf_counter() - started
    assert report.ok, report.to_dict()
    trades = sum(p.trades for p in report.products)
    requests = sum(p.stats.snapshot().requests for p in report.products)
    return trades, elapsed, {"requests": requests}


def sim_stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/_sim/stats").json()  # type: ignore[no-any-return]


def reference_download(url: str, threads: int, pages_per_product: int) -> tuple[int, float]:
    """Bare httpx threads fetching the same 1000-trade pages: the transport ceiling."""
    jobs = []
    for product in tradable("coinbase"):
        count = min(pages_per_product, product.history // 1000)
        jobs += [(product.symbol, product.first_id + 1000 * (k + 1)) for k in range(count)]
    with httpx.Client(base_url=url, limits=httpx.Limits(max_connections=threads)) as client:
        def fetch(job: tuple[str, int]) -> int:
            symbol, cursor = job
            response = client.get(f"/products/{symbol}/trades", params={"after": cursor + 1, "limit": 1000})
            return len(response.content) and 1000
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            trades = sum(pool.map(fetch, jobs))
        return trades, time.perf_counter() - started


def scenario_a(exchange: str, quick: bool) -> dict[str, float]:
    venue = spec(exchange)
    scale = venue.bench_history_scale / 3 if quick else venue.bench_history_scale
    proc, url = start_simulator(exchange, "--latency", "0.2", "--history-scale", str(scale))
    try:
        with tempfile.TemporaryDirectory() as lake:
            trades, elapsed, info = run_ingest(exchange, url, Path(lake), unlimited=False)
        stats = sim_stats(url)
    finally:
        proc.terminate()
        proc.wait()
    rate = trades / elapsed
    return {"trades": trades, "seconds": round(elapsed, 2), "trades_per_s": round(rate),
            "ceiling_trades_per_s": venue.ceiling_trades_per_s,
            "fraction_of_ceiling": round(rate / venue.ceiling_trades_per_s, 3), "requests": info["requests"],
            "429s": stats.get("429", 0), "418s": stats.get("418", 0)}


def scenario_c(exchange: str, quick: bool) -> dict[str, float]:
    days = 2.0 if quick else 5.0
    proc, url = start_simulator(exchange, "--history-days", str(days), "--history-scale",
                                str(spec(exchange).bench_history_scale * (5 if quick else 20)))
    try:
        env = {f"SCHEMAHUB_{exchange.upper()}_URL": url, f"SCHEMAHUB_{exchange.upper()}_ARCHIVE_URL": url}
        since = int((time.time() - (days + 1) * 86400) * 1_000_000)
        warm_archive(exchange, url, since)  # the simulator builds each file once, before the clock runs
        with tempfile.TemporaryDirectory() as lake:
            settings = Settings.load(lake, env=env)
            options = IngestOptions(since_us=since, workers=4, source="archive")
            request = IngestRequest([exchange], [p.symbol for p in tradable(exchange)], lambda _: options)
            started = time.perf_counter()
            [report] = pipeline.ingest(settings, request)
            elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()
    assert report.ok, report.to_dict()
    trades = sum(p.trades for p in report.products)
    records = sum(p.archive_files for p in report.products)  # coverage records: a file, or its stretches
    return {"trades": trades, "archive_records": records, "seconds": round(elapsed, 2),
            "trades_per_s": round(trades / elapsed)}


def warm_archive(exchange: str, url: str, since_us: int) -> None:
    """Ask for every file of the range once (the simulator builds it then; not timed)."""
    archive_class = spec(exchange).archive_class()
    assert archive_class is not None
    archive = archive_class(None)  # type: ignore[arg-type]  # (paths only)
    first = datetime.fromtimestamp(since_us / 1e6, UTC).date()
    days = [first + timedelta(days=n) for n in range((datetime.now(UTC).date() - first).days + 2)]
    with httpx.Client(base_url=url, timeout=600) as client:
        for product in tradable(exchange):
            native = Product(product.symbol, product.native, "online", True)  # type: ignore[arg-type]
            dataset = next(iter(archive.layouts))
            for day in days:
                for period in {Period(day, "daily"), Period(day.replace(day=1), "monthly")}:
                    client.get(archive.path(native, dataset, period))


def scenario_b(scale: float) -> dict[str, float]:
    proc, url = start_simulator("coinbase", "--latency", "0.005", "--no-rate-limit", "--history-scale",
                                str(scale))
    try:
        httpx.get(f"{url}/_sim/warm", timeout=600)  # serialize every trade before timing
        ref_trades, ref_elapsed = reference_download(url, threads=16, pages_per_product=10**9)
        with tempfile.TemporaryDirectory() as lake:
            trades, elapsed, _ = run_ingest("coinbase", url, Path(lake), unlimited=True, chunks=8)
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
    parser.add_argument("--only", choices=["a", "b", "c"], help="run one scenario")
    parser.add_argument("--exchange", choices=list_exchanges(), action="append",
                        help="scenario (a) for this exchange only (repeatable)")
    args = parser.parse_args()
    chosen = args.exchange or list_exchanges()
    if args.only in (None, "a"):
        for exchange in chosen:
            if spec(exchange).ceiling_trades_per_s:  # a REST history to measure against its limit
                result = scenario_a(exchange, args.quick)
                print(json.dumps({f"a_rate_limited_{exchange}": result}), flush=True)
    if args.only in (None, "c"):
        for exchange in chosen:
            if spec(exchange).archive is not None:
                print(json.dumps({f"c_archive_{exchange}": scenario_c(exchange, args.quick)}), flush=True)
    if args.only in (None, "b"):
        print(json.dumps({"b_unlimited": scenario_b(2.0 if args.quick else 10.0)}), flush=True)


if __name__ == "__main__":
    main()
