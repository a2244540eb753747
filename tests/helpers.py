"""Test helpers: run ingest against a simulator, read the raw lake back, compare with ground truth."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from schemahub import pipeline
from schemahub.config import Settings
from schemahub.infra.checkpoints import Checkpoint, GapLog
from schemahub.ingest.engine import IngestOptions
from schemahub.ingest.report import IngestReport
from schemahub.raw import files
from schemahub.raw.layout import parse_key, product_prefix
from schemahub.simulator.market import ProductSpec
from schemahub.simulator.server import Simulator
from tests.lakes import LakeLike, LakeRef, as_lake

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_FIXTURES = Path(__file__).parents[2] / "shared" / "fixtures"

SIM_START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
EPOCH_2020_US = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)

TEST_PRODUCTS = (
    ProductSpec("BTC-USD", 64_000.0, mean_size=0.02, trades_per_s=6.0, history=12_345,
                first_id=700_000_001, gap_rate=0.002),
    ProductSpec("SOL-USD", 150.0, price_decimals=3, size_decimals=6, mean_size=8.0, trades_per_s=3.0,
                history=7_500, first_id=90_000_001, id_format="mixed", gap_rate=0.001),
    ProductSpec("BTC-USDT", 64_010.0, mean_size=0.01, trades_per_s=1.0, history=4_200,
                first_id=18_500_001, id_format="string", gap_rate=0.0),
    ProductSpec("OLD-USD", 1.0, trades_per_s=0.1, history=50, status="delisted", trading_disabled=True),
)

BINANCE_TEST_PRODUCTS = (
    ProductSpec("BTC-USDT", 64_005.0, mean_size=0.01, trades_per_s=8.0, history=9_500, first_id=5_100_000_001,
                native_id="BTCUSDT", status="TRADING", gap_rate=0.001),
    ProductSpec("ETH-USDT", 3_401.0, mean_size=0.3, trades_per_s=4.0, history=6_100, first_id=2_200_000_001,
                native_id="ETHUSDT", status="TRADING", gap_rate=0.0),
    ProductSpec("ETH-BTC", 0.0531, price_decimals=5, mean_size=0.5, trades_per_s=1.0, history=2_300,
                first_id=400_000_001, native_id="ETHBTC", status="TRADING", gap_rate=0.0),
    ProductSpec("LUNA-USDT", 0.5, trades_per_s=0.1, history=50, native_id="LUNAUSDT", status="BREAK"),
)

KRAKEN_TEST_PRODUCTS = (
    ProductSpec("BTC-USD", 63_990.0, price_decimals=1, mean_size=0.02, trades_per_s=2.0, history=4_500,
                first_id=80_000_001, native_id="XXBTZUSD", base_code="XBT", quote_code="USD", gap_rate=0.001),
    ProductSpec("BTC-USDT", 64_001.0, price_decimals=1, mean_size=0.01, trades_per_s=0.5, history=2_100,
                first_id=10_218_208, native_id="XBTUSDT", base_code="XBT", quote_code="USDT", gap_rate=0.0),
    ProductSpec("DOGE-USD", 0.16, price_decimals=5, size_decimals=1, mean_size=900.0, trades_per_s=0.3,
                history=1_200, first_id=9_000_001, native_id="XDGUSD", base_code="XDG", quote_code="USD",
                gap_rate=0.0),
    ProductSpec("LTC-USD", 70.0, mean_size=1.0, trades_per_s=0.2, history=1_500, first_id=1,
                native_id="XLTCZUSD", base_code="LTC", quote_code="USD", legacy_ids=True, gap_rate=0.0),
)

PRODUCTS_FOR = {"coinbase": TEST_PRODUCTS, "binance": BINANCE_TEST_PRODUCTS, "kraken": KRAKEN_TEST_PRODUCTS}
TRADED = {"coinbase": ["BTC-USD", "SOL-USD", "BTC-USDT"], "binance": ["BTC-USDT", "ETH-USDT", "ETH-BTC"],
          "kraken": ["BTC-USD", "BTC-USDT", "DOGE-USD"]}
"""Products with real trade ids that the generic tests ingest, per exchange."""

# Short timeouts and backoffs: a test of failure paths should take seconds, not minutes.
FAST_ENV = {
    "SCHEMAHUB_RETRY_BASE": "0.02",
    "SCHEMAHUB_RETRY_CAP": "0.2",
    "SCHEMAHUB_BREAKER_COOLDOWN": "0.1",
    "SCHEMAHUB_HTTP_READ_TIMEOUT": "2",
    "SCHEMAHUB_HTTP_CONNECT_TIMEOUT": "1",
    "SCHEMAHUB_LOCK_TTL": "5",
    "SCHEMAHUB_RATE_LIMIT_PAUSE": "0.1",
}


def settings(lake: LakeLike, sim: Simulator | None, **env: str) -> Settings:
    url = sim.url if sim is not None else "http://127.0.0.1:9"
    exchange = sim.exchange if sim is not None else "coinbase"
    where = as_lake(lake)
    return Settings.load(where.url, env={**FAST_ENV, **where.env, f"SCHEMAHUB_{exchange.upper()}_URL": url,
                                         **env})


def ingest(lake: LakeLike, sim: Simulator, products: Sequence[str] | None, *, since_us: int = EPOCH_2020_US,
           rate: float = 1000.0, burst: int = 50, workers: int = 3, chunks: int = 4,
           **env: str) -> IngestReport:
    options = IngestOptions(since_us=since_us, workers=workers, chunk_concurrency=chunks,
                            commit_interval_s=0.05)
    if sim.exchange == "binance":
        burst = max(burst, 300)  # weights: one historicalTrades request costs 25
    return pipeline.ingest(settings(lake, sim, **env), sim.exchange, list(products) if products else None,
                           options, rate=rate if sim.exchange != "binance" else rate * 25, burst=burst)


def cli_env(sim: Simulator | Sequence[Simulator] | None, lake: LakeRef | None = None,
            **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess pointed at one simulator or several (and a lake)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMAHUB_", "AWS_"))}
    env.update(FAST_ENV)
    if lake is not None:
        env.update(lake.env)
    env["SCHEMAHUB_COINBASE_URL"] = "http://127.0.0.1:9"
    sims = [] if sim is None else [sim] if isinstance(sim, Simulator) else list(sim)
    for one in sims:
        env[f"SCHEMAHUB_{one.exchange.upper()}_URL"] = one.url
    env.update(extra)
    return env


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "schemahub", "--log-format", "json", *args]


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_args(*args), env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


# -- recordings ------------------------------------------------------------------------


def recording(relative: str) -> Any:
    """A recorded exchange response: MIT-sourced ones are copied into tests/fixtures/;
    LGPL-sourced ones are read from ../shared/fixtures/, and the test skips without it."""
    local = FIXTURES / relative
    if local.exists():
        return orjson.loads(local.read_bytes())
    shared = SHARED_FIXTURES / relative
    if not shared.exists():
        import pytest

        pytest.skip(f"recording {relative} is read from ../shared/fixtures, which is absent here")
    return orjson.loads(shared.read_bytes())


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}[type(value)]


def assert_shaped_like(got: Any, recorded: Any, where: str = "$", *, same_keys: bool = True) -> None:
    """``got`` (what the simulator serves) has the recorded JSON's shape: the same types all
    the way down; objects with the same keys in the same order (``same_keys``) or a subset of
    them; array items compared position by position with the recorded ones (rows such as
    Kraken's are tuples), the last recorded item standing for any further ones."""
    assert json_type(got) == json_type(recorded), f"{where}: {json_type(got)}, recorded {json_type(recorded)}"
    if isinstance(got, dict):
        if same_keys:
            assert list(got) == list(recorded), f"{where}: keys {list(got)}, recorded {list(recorded)}"
        else:
            extra = [k for k in got if k not in recorded]
            assert not extra, f"{where}: keys {extra} are not in the recording"
        for key, value in got.items():
            assert_shaped_like(value, recorded[key], f"{where}.{key}", same_keys=same_keys)
    elif isinstance(got, list) and recorded:
        for index, item in enumerate(got):
            assert_shaped_like(item, recorded[min(index, len(recorded) - 1)], f"{where}[{index}]",
                               same_keys=same_keys)


# -- reading the lake back -------------------------------------------------------------


def raw_files(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> list[tuple[str, files.RawHeader,
                                                                                    list[dict[str, Any]]]]:
    storage = as_lake(lake).storage()
    out = []
    for info in storage.list(product_prefix(exchange, symbol)):
        assert parse_key(info.key) is not None, f"unexpected object in the raw layer: {info.key}"
        data = storage.read(info.key)
        assert data is not None
        header, records = files.decode(data, info.key)
        out.append((info.key, header, list(records)))
    return out


def lake_keys(lake: LakeLike, prefix: str = "") -> list[str]:
    """Every object in the lake under ``prefix`` (leases included for a local lake)."""
    return [info.key for info in as_lake(lake).storage().list(prefix)]


def held_leases(lake: LakeLike, owners: bool = False) -> Any:
    """The leases someone holds right now (released ones excluded): names, or (name, owner)."""
    lakeref = as_lake(lake)
    backend = pipeline.open_lake(Settings.load(lakeref.url, env={**os.environ, **lakeref.env})).locks
    held = [(record.name, record.owner) for record in backend.list() if not record.released]
    return held if owners else {name for name, _ in held}


def raw_records(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> list[dict[str, Any]]:
    """Every raw trade line of a product, in file order."""
    return [record for _, _, records in raw_files(lake, symbol, exchange) for record in records]


def checkpoint(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> Checkpoint:
    data = as_lake(lake).storage().read(f"state/checkpoints/{exchange}/{symbol}.json")
    assert data is not None, f"no checkpoint for {exchange} {symbol}"
    return Checkpoint.model_validate(orjson.loads(data))


def gap_ranges(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> list[tuple[int, int]]:
    data = as_lake(lake).storage().read(f"state/gaps/{exchange}/{symbol}.json")
    if data is None:
        return []
    log = GapLog.model_validate(orjson.loads(data))
    return [(g.first_id, g.last_id) for g in log.gaps]


def trade_id(record: Any) -> int:
    """The id of a raw record or a ground-truth wire trade, on any exchange."""
    if isinstance(record, list):  # a Kraken wire row
        return int(record[6])
    for key in ("trade_id", "id", "a"):
        if key in record:
            return int(record[key])
    raise KeyError(f"no trade id in {record}")


def payload(record: dict[str, Any]) -> Any:
    """What of a raw line the exchange sent (Kraken lines wrap the verbatim row)."""
    return record["trade"] if "trade" in record and "id_kind" in record else record


def truth_range(sim: Simulator, symbol: str, after_id: int, through_id: int) -> list[dict[str, Any]]:
    return [t for t in sim.ground_truth(symbol) if after_id < trade_id(t) <= through_id]


def skipped_ids(sim: Simulator, symbol: str, after_id: int, through_id: int) -> list[int]:
    market = sim.market(symbol)
    count = market.visible(sim.now_us())
    return [i for i in market.skipped_ids(count) if after_id < i <= through_id]


def expand(ranges: list[tuple[int, int]]) -> list[int]:
    return [i for a, b in ranges for i in range(a, b + 1)]


def assert_lake_matches_truth(lake: LakeLike, sim: Simulator, symbol: str) -> Checkpoint:
    """Raw lines == ground truth, verbatim, trade by trade; gaps == the simulator's skipped ids."""
    exchange = sim.exchange
    cp = checkpoint(lake, symbol, exchange)
    records = raw_records(lake, symbol, exchange)
    ids = [trade_id(r) for r in records]
    assert len(ids) == len(set(ids)), f"{symbol}: duplicate trade ids in the raw layer"
    got = [payload(r) for r in sorted(records, key=trade_id)]
    want = truth_range(sim, symbol, cp.start_after_id, cp.last_trade_id)
    assert len(got) == len(want), f"{symbol}: {len(got)} raw trades, ground truth has {len(want)}"
    for mine, theirs in zip(got, want, strict=True):
        # Verbatim: same keys in the same order, same values, same JSON types.
        assert orjson.dumps(mine) == orjson.dumps(theirs), f"{symbol}: raw {mine} != truth {theirs}"
    assert expand(gap_ranges(lake, symbol, exchange)) == skipped_ids(sim, symbol, cp.start_after_id,
                                                                      cp.last_trade_id)
    return cp


class FakeClock:
    """A monotonic clock for unit tests; ``sleep`` moves it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the unified table ----------------------------------------------------------------------


def transform(lake: LakeLike, **options: Any) -> Any:
    from schemahub.transform.runner import TransformOptions

    return pipeline.transform(settings(lake, None), TransformOptions(**options))


def delta_table(lake: LakeLike) -> Any:
    """The unified table, opened with delta-rs directly (not through SchemaHub)."""
    from deltalake import DeltaTable

    storage = as_lake(lake).storage()
    return DeltaTable(storage.url_for("table/trades"), storage_options=storage.table_options() or None)


def table_rows(lake: LakeLike, version: int | None = None,
               exchange: str | None = None) -> list[dict[str, Any]]:
    """Every row of the unified table, sorted by its primary key."""
    delta = delta_table(lake)
    if version is not None:
        delta.load_as_version(version)
    rows = [r for r in delta.to_pyarrow_table().to_pylist() if exchange is None or r["exchange"] == exchange]
    return sorted(rows, key=lambda r: (r["exchange"], r["symbol"], int(r["trade_id"])))


def expected_rows(lake: LakeLike, sim: Simulator, symbols: Sequence[str]) -> list[dict[str, Any]]:
    """The table as it must be: the simulator's trades in unified form, with the taker side,
    exact microsecond times, and ingest_ts from the raw file each trade was fetched in."""
    from schemahub.sources.base import us_to_datetime

    exchange = sim.exchange
    rows = []
    for symbol in sorted(symbols):
        fetched: dict[int, datetime] = {}
        for _, header, records in raw_files(lake, symbol, exchange):
            for record in records:  # a trade in two raw files keeps its first fetch time
                seen = fetched.get(trade_id(record), header.fetched_at)
                fetched[trade_id(record)] = min(header.fetched_at, seen)
        window = checkpoint(lake, symbol, exchange)
        market = sim.market(symbol)
        for trade in market.trades(0, market.visible(sim.now_us())):
            if not window.start_after_id < trade.trade_id <= window.last_trade_id:
                continue
            assert trade.trade_id in fetched, f"{symbol} {trade.trade_id} is in no raw file"
            moment = us_to_datetime(trade.time_us)
            rows.append({
                "exchange": exchange, "symbol": symbol, "trade_id": str(trade.trade_id), "id_kind": "trade",
                "side": trade.taker_side, "price": float(trade.price), "quantity": float(trade.size),
                "trade_ts": moment, "ingest_ts": fetched[trade.trade_id], "trade_date": moment.date(),
            })
    return rows


def assert_table_matches_truth(lake: LakeLike, sim: Simulator,
                               symbols: Sequence[str]) -> list[dict[str, Any]]:
    """Row by row, every column: taker side, µs timestamps, exact ids; no loss, no duplicate."""
    got = table_rows(lake, exchange=sim.exchange)
    keys = [(r["exchange"], r["symbol"], r["trade_id"]) for r in got]
    assert len(keys) == len(set(keys)), "duplicate primary keys in the table"
    want = expected_rows(lake, sim, symbols)
    assert len(got) == len(want), f"table has {len(got)} rows, ground truth {len(want)}"
    for mine, theirs in zip(got, want, strict=True):
        assert mine == theirs, f"table {mine} != truth {theirs}"
    return got
