"""The simulated exchanges and the products each lists by default.

Products are named the exchange's way (``native_id``, asset codes) and carry the
normalized symbol SchemaHub should derive from the exchange's metadata.
"""

from __future__ import annotations

from schemahub.simulator.binance import BinanceSim
from schemahub.simulator.coinbase import CoinbaseSim
from schemahub.simulator.kraken import KrakenSim
from schemahub.simulator.market import ProductSpec
from schemahub.simulator.wire import SimulatedExchange

EXCHANGES: dict[str, type[SimulatedExchange]] = {
    "binance": BinanceSim,
    "coinbase": CoinbaseSim,
    "kraken": KrakenSim,
}

DEFAULT_PRODUCTS: dict[str, tuple[ProductSpec, ...]] = {
    "coinbase": (
        ProductSpec("BTC-USD", 64_000.0, mean_size=0.02, trades_per_s=6.0, history=60_000,
                    first_id=700_000_001),
        ProductSpec("ETH-USD", 3_400.0, mean_size=0.4, trades_per_s=4.0, history=40_000,
                    first_id=510_000_001),
        ProductSpec("SOL-USD", 150.0, price_decimals=3, size_decimals=6, mean_size=8.0, trades_per_s=3.0,
                    history=30_000, first_id=90_000_001, id_format="mixed"),
        ProductSpec("BTC-USDT", 64_010.0, mean_size=0.01, trades_per_s=1.0, history=10_000,
                    first_id=18_500_001, id_format="string"),
        ProductSpec("ETH-BTC", 0.053, price_decimals=5, mean_size=0.5, trades_per_s=0.5, history=5_000,
                    first_id=40_000_001),
        ProductSpec("DOGE-USD", 0.16, price_decimals=5, size_decimals=1, mean_size=900.0, trades_per_s=1.0,
                    history=5_000, first_id=1),
        ProductSpec("OLD-USD", 1.0, trades_per_s=0.1, history=100, status="delisted", trading_disabled=True),
        ProductSpec("HALT-USD", 2.0, trades_per_s=0.1, history=100, cancel_only=True),
    ),
    "binance": (
        ProductSpec("BTC-USDT", 64_005.0, mean_size=0.01, trades_per_s=12.0, history=60_000,
                    first_id=5_100_000_001, native_id="BTCUSDT", gap_rate=0.0, status="TRADING"),
        ProductSpec("ETH-USDT", 3_401.0, mean_size=0.3, trades_per_s=6.0, history=30_000,
                    first_id=2_200_000_001, native_id="ETHUSDT", gap_rate=0.0, status="TRADING"),
        ProductSpec("SOL-USDT", 150.1, mean_size=6.0, trades_per_s=4.0, history=20_000,
                    first_id=900_000_001, native_id="SOLUSDT", gap_rate=0.0, status="TRADING"),
        ProductSpec("ETH-BTC", 0.0531, price_decimals=5, mean_size=0.5, trades_per_s=1.0, history=5_000,
                    first_id=400_000_001, native_id="ETHBTC", gap_rate=0.0, status="TRADING"),
        ProductSpec("LUNA-USDT", 0.5, trades_per_s=0.1, history=100, native_id="LUNAUSDT", status="BREAK"),
    ),
    "kraken": (
        ProductSpec("BTC-USD", 63_990.0, price_decimals=1, mean_size=0.02, trades_per_s=2.0, history=15_000,
                    first_id=80_000_001, native_id="XXBTZUSD", base_code="XBT", quote_code="USD",
                    gap_rate=0.0),
        ProductSpec("ETH-USD", 3_399.0, mean_size=0.3, trades_per_s=1.0, history=8_000, first_id=50_000_001,
                    native_id="XETHZUSD", base_code="ETH", quote_code="USD", gap_rate=0.0),
        ProductSpec("BTC-USDT", 64_001.0, price_decimals=1, mean_size=0.01, trades_per_s=0.5, history=4_000,
                    first_id=10_218_208, native_id="XBTUSDT", base_code="XBT", quote_code="USDT",
                    gap_rate=0.0),
        ProductSpec("DOGE-USD", 0.16, price_decimals=5, size_decimals=1, mean_size=900.0, trades_per_s=0.3,
                    history=2_000, first_id=9_000_001, native_id="XDGUSD", base_code="XDG", quote_code="USD",
                    gap_rate=0.0),
        ProductSpec("LTC-USD", 70.0, mean_size=1.0, trades_per_s=0.2, history=1_500, first_id=1,
                    native_id="XLTCZUSD", base_code="LTC", quote_code="USD", legacy_ids=True, gap_rate=0.0),
    ),
}

LIMITS: dict[str, dict[str, float]] = {
    "coinbase": {"rate": 10.0, "burst": 15},  # 10 req/s per IP, bursts of 15
    "binance": {"weight_limit": 6000, "weight_window_s": 60.0},  # 6000 request weight per minute
    "kraken": {"rate": 1.0, "burst": 2},  # "about 1 per second"; a little slack for jitter
}
"""What each simulated exchange enforces per IP by default: its documented public limits."""
