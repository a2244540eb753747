"""Bitfinex's public REST API (v2), simulated with its real wire format and semantics.

Shapes follow the recordings in ../shared/fixtures/bitfinex/ (checked by a test): trades
are ``[ID, MTS, AMOUNT, PRICE]`` arrays of JSON numbers, AMOUNT signed by the taker's side;
``start``/``end`` bound MTS inclusively, ``sort=1`` pages oldest first and ``sort=-1``
(the default) newest first; at most 10,000 rows. Ids come from one venue-wide sequence, so
a pair sees jumps (``gap_rate``); the clock has whole milliseconds, so busy pairs have many
trades per millisecond. Throttling answers alternate between the two forms seen in the wild:
HTTP 429 ``["error", 11010, "ratelimit: error"]`` and HTTP 500 ``["error", null, "ERR_RATE_LIMIT"]``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from typing import ClassVar

from schemahub.simulator.market import MS_CLOCK_ALWAYS, Market, ProductSpec, TimeView, Trade, plain_number
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply

MAX_LIMIT = 10_000


def _product(symbol: str, price: float, native: str, codes: str, history: int, per_s: float,
             first_id: int = 1_560_000_001, decimals: int = 1, size: float = 0.05) -> ProductSpec:
    base, quote = codes.split("/")
    return ProductSpec(symbol, price, price_decimals=decimals, mean_size=size, trades_per_s=per_s,
                       history=history, first_id=first_id, native_id=native, base_code=base,
                       quote_code=quote, gap_rate=0.4, ms_clock_before_us=MS_CLOCK_ALWAYS)


class BitfinexSim(SimulatedExchange):
    name = "bitfinex"
    default_products = (
        _product("BTC-USD", 64_000.0, "BTCUSD", "BTC/USD", 30_000, 4.0),
        _product("ETH-USD", 3_400.0, "ETHUSD", "ETH/USD", 15_000, 2.0, decimals=2, size=0.4),
        _product("BTC-USDT", 64_010.0, "BTCUST", "BTC/UST", 8_000, 1.0),
        _product("DOGE-USD", 0.16, "DOGE:USD", "DOGE/USD", 4_000, 0.5, decimals=5, size=900.0),
    )
    test_products = (
        # Taker orders sweep 1-5 resting orders in one millisecond: page seams (the tests page
        # 1,000 trades at a time) often fall inside one.
        _product("BTC-USD", 64_000.0, "BTCUSD", "BTC/USD", 4_500, 5.0),
        _product("BTC-USDT", 64_010.0, "BTCUST", "BTC/UST", 1_500, 2.0, first_id=1_700_000_001),
        _product("DOGE-USD", 0.16, "DOGE:USD", "DOGE/USD", 1_200, 1.0, first_id=1_800_000_001, decimals=5,
                 size=900.0),
    )
    traded = ("BTC-USD", "BTC-USDT", "DOGE-USD")
    limits: ClassVar[dict[str, float]] = {"rate": 15 / 60, "burst": 2}
    test_pairs = ("AAABBB", "TESTBTC:TESTUSD")
    """Test pairs the real list carries (the connector must skip them)."""
    code_map = (("UST", "USDt"), ("UDC", "USDC"), ("AAA", "TESTAAA"), ("BBB", "TESTBBB"), ("DSH", "DASH"))

    def __init__(self, markets: Mapping[str, Market]) -> None:
        super().__init__(markets)
        self._refusals = itertools.count()

    def rate_limited(self) -> Reply:
        if next(self._refusals) % 2:
            return json_reply(500, ["error", None, "ERR_RATE_LIMIT"])
        return json_reply(429, ["error", 11010, "ratelimit: error"])

    def server_error(self, status: int) -> Reply:
        return json_reply(status, ["error", 10000, "unknown error"])

    def route(self, path: str, query: Mapping[str, str], now_us: int, headers: Mapping[str, str]) -> Reply:
        if path == "/v2/conf/pub:list:pair:exchange":
            return json_reply(200, [[*self.test_pairs, *(m.spec.native for m in self.markets.values())]])
        if path == "/v2/conf/pub:map:currency:sym":
            return json_reply(200, [[list(pair) for pair in self.code_map]])
        parts = path.split("/")
        if len(parts) != 5 or parts[:3] != ["", "v2", "trades"] or parts[4] != "hist":
            return json_reply(404, ["error", 10020, "not found"])
        market = self.markets.get(parts[3][1:]) if parts[3].startswith("t") else None
        if market is None:
            return json_reply(500, ["error", 10020, "symbol: invalid"])
        try:
            limit = int(query.get("limit", "125"))
            start = int(query["start"]) if "start" in query else None
            end = int(query["end"]) if "end" in query else None
            ascending = int(query.get("sort", "-1")) == 1
        except ValueError:
            return json_reply(500, ["error", 10020, "time_interval: invalid"])
        if not 1 <= limit <= MAX_LIMIT:
            return json_reply(500, ["error", 10020, "limit: invalid"])
        visible = market.visible(now_us)
        times = TimeView(market, visible, lambda trade: trade.time_us // 1000)
        lo = 0 if start is None else bisect.bisect_left(times, start)
        hi = visible if end is None else bisect.bisect_right(times, end)
        if ascending:
            first, stop = lo, min(hi, lo + limit)
        else:
            first, stop = max(lo, hi - limit), hi
        return Reply(200, self.page_bytes(market, first, max(first, stop), newest_first=not ascending))

    def wire_trade(self, market: Market, trade: Trade, variant: bool = False) -> bytes:
        amount = plain_number(trade.size_units, trade.size_decimals)
        signed = amount if trade.taker_side == "buy" else "-" + amount
        price = plain_number(trade.price_units, trade.price_decimals)
        return f"[{trade.trade_id},{trade.time_us // 1000},{signed},{price}]".encode()

