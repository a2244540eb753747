"""Synthetic lakes for the benchmarks.

``raw_lake`` writes raw files exactly as ingest would (Coinbase wire format from the
simulator's seeded streams, 1000-trade chunks, headers, checkpoints) without HTTP, in
parallel processes. ``unified_table`` generates a large unified table directly with
DuckDB (deterministic, hash-based values) for the query benchmark.
"""

from __future__ import annotations

import gzip
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import orjson

from schemahub.infra.checkpoints import Checkpoint, CheckpointStore
from schemahub.infra.storage import LocalStorage
from schemahub.raw import files
from schemahub.raw.layout import RawKey
from schemahub.simulator.coinbase import CoinbaseSim
from schemahub.simulator.market import Market, ProductSpec
from schemahub.timeutil import from_us

START = datetime(2026, 10, 1, tzinfo=UTC)


def _specs(products: int, per_product: int) -> list[ProductSpec]:
    names = ["BTC-USD", "ETH-USD", "SOL-USD", "BTC-USDT", "ETH-BTC", "DOGE-USD", "ADA-USD", "XRP-USD",
             "LTC-USD", "AVAX-USD"]
    return [ProductSpec(names[i], 100.0 * (i + 1), trades_per_s=20.0, history=per_product,
                        first_id=1 + i * 10**9, gap_rate=0.0) for i in range(products)]


def _write_product(lake: str, spec: ProductSpec, start_index: int, count: int, seed: int,
                   per_file: int = 1000) -> int:
    storage = LocalStorage(lake)
    market = Market(spec, seed, int(START.timestamp() * 1_000_000))
    market.anchor_us = int(START.timestamp() * 1_000_000)  # the same times however long the history
    market.stream.ensure(start_index + count)
    api = CoinbaseSim({spec.symbol: market})
    fetched = datetime.now(UTC)
    written = 0
    for lo in range(start_index, start_index + count, per_file):
        hi = min(lo + per_file, start_index + count)
        trades = [market.stream.trade(i, market.anchor_us) for i in range(lo, hi)]
        first, last = trades[0], trades[-1]
        header = files.RawHeader(
            exchange="coinbase", symbol=spec.symbol, native_id=spec.symbol,
            covers_after_id=first.trade_id - 1, covers_through_id=last.trade_id,
            first_trade_id=first.trade_id, last_trade_id=last.trade_id, trade_count=len(trades),
            first_trade_time=from_us(first.time_us), last_trade_time=from_us(last.time_us),
            missing_ids=[], fetched_at=fetched, requests=[],
            writer=files.WriterMeta(run_id="bench", owner="bench", lease_token=0))
        head = orjson.dumps({files.HEADER_KEY: header.model_dump(mode="json")})
        body = b"\n".join([head, *(api.wire_trade(market, t) for t in trades)]) + b"\n"
        key = RawKey("coinbase", spec.symbol, from_us(first.time_us).date(),  # type: ignore[arg-type]
                     first.trade_id, last.trade_id).key
        storage.create(key, gzip.compress(body, compresslevel=files.COMPRESSION_LEVEL, mtime=0))
        written += len(trades)
    return written


def raw_lake(lake: Path, *, products: int, per_product: int, start_index: int = 0, seed: int = 1,
             per_file: int = 1000) -> int:
    """Write ``per_product`` trades per product (after ``start_index``), ``per_file`` trades per
    raw file (a page, or what ingest gathers on an object store), and advance checkpoints."""
    specs = _specs(products, start_index + per_product)
    with ProcessPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        counts = list(pool.map(_write_product, [str(lake)] * products, specs, [start_index] * products,
                               [per_product] * products, [seed] * products, [per_file] * products))
    store = CheckpointStore(LocalStorage(lake))
    for spec in specs:
        previous = store.load("coinbase", spec.symbol)
        checkpoint = Checkpoint(exchange="coinbase", symbol=spec.symbol, start_after_id=spec.first_id - 1,
                                last_trade_id=spec.first_id - 1 + start_index + per_product,
                                last_trade_time=None, updated_at=datetime.now(UTC), run_id="bench",
                                lease_token=0)
        store.commit(checkpoint, previous)
    return sum(counts)


UNIFIED_SQL = """
WITH t AS (
    SELECT i,
           (i % $symbols)                          AS s,
           (hash(i) % 1000000)::DOUBLE / 1000000   AS u,
           (hash(i * 7919) % 1000)::DOUBLE / 1000  AS v
    FROM range($first_row, $end_row) r(i)
)
SELECT
    ['coinbase', 'binance', 'kraken'][(s % 3) + 1]                       AS exchange,
    ['BTC-USD', 'ETH-USD', 'SOL-USD', 'BTC-USDT', 'ETH-BTC', 'DOGE-USD', 'ADA-USD', 'XRP-USD',
     'LTC-USD', 'AVAX-USD', 'DOT-USD', 'LINK-USD'][(s // 3) % 12 + 1]    AS symbol,
    CAST(i // $symbols AS VARCHAR)                                       AS trade_id,
    'trade'                                                              AS id_kind,
    CASE WHEN u < 0.5 THEN 'buy' ELSE 'sell' END                         AS side,
    round(100 * (s + 1) * (1 + 0.05 * sin(i / 1e6) + 0.001 * v), 2)      AS price,
    round(0.001 + u * 2, 8)                                              AS quantity,
    make_timestamptz(CAST($start_us + (i // $symbols) * $step_us + (hash(i) % 1000) AS BIGINT)) AS trade_ts,
    make_timestamptz(CAST($start_us + (i // $symbols) * $step_us + 5000000 AS BIGINT)) AS ingest_ts
FROM t
"""


def unified_sql(rows: int, symbols: int, days: int) -> tuple[str, dict[str, int]]:
    step = max(1, days * 86_400_000_000 * symbols // rows)
    return UNIFIED_SQL, {"first_row": 0, "end_row": rows, "symbols": symbols,
                         "start_us": int(START.timestamp() * 1_000_000), "step_us": step}
