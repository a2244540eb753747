"""Binance spot's public REST API, simulated with its real wire format and limits.

Shapes follow the recordings in ../shared/fixtures/binance/ (checked by a test). Limits
are request *weight* per IP in a fixed one-minute window: every answer carries
``X-MBX-USED-WEIGHT-1M``; over the budget the answer is 429 with ``Retry-After``; a client
that keeps going after ``ban_after`` refusals is banned: 418 with ``Retry-After`` until
the ban ends, and each new ban lasts twice as long. ``X-MBX-TIME-UNIT: MICROSECOND``
switches timestamps (and ``startTime``) to microseconds.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from schemahub.simulator.aggregates import buckets
from schemahub.simulator.binance_archive import MICROSECONDS_FROM_US, BinanceArchive
from schemahub.simulator.market import Market, ProductSpec, Trade, decimal_text
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply

if TYPE_CHECKING:
    from schemahub.simulator.server import Faults

MAX_LIMIT = 1000
WEIGHTS = {"/api/v3/exchangeInfo": 20, "/api/v3/historicalTrades": 25, "/api/v3/trades": 25,
           "/api/v3/aggTrades": 4, "/api/v3/klines": 2}


IGNORE_GRACE_S = 0.5
"""Requests arriving this soon after the first 429 were already on the wire: not ignoring it."""


@dataclass
class _Window:
    minute: int = -1
    used: int = 0
    refused: int = 0
    first_refusal: float = 0.0
    banned_until: float = 0.0
    bans: int = 0


@dataclass
class _Aggregates:
    """Aggregate trades of one market: runs of fills with the same time, side and price."""

    starts: array[int] = field(default_factory=lambda: array("q"))  # trade index where each begins
    scanned: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class BinanceSim(SimulatedExchange):
    name = "binance"
    default_products = (
        ProductSpec("BTC-USDT", 64_005.0, mean_size=0.01, trades_per_s=12.0, history=60_000,
                    first_id=5_100_000_001, native_id="BTCUSDT", gap_rate=0.0, status="TRADING",
                    ms_clock_before_us=MICROSECONDS_FROM_US),
        ProductSpec("ETH-USDT", 3_401.0, mean_size=0.3, trades_per_s=6.0, history=30_000,
                    first_id=2_200_000_001, native_id="ETHUSDT", gap_rate=0.0, status="TRADING",
                    ms_clock_before_us=MICROSECONDS_FROM_US),
        ProductSpec("SOL-USDT", 150.1, mean_size=6.0, trades_per_s=4.0, history=20_000,
                    first_id=900_000_001, native_id="SOLUSDT", gap_rate=0.0, status="TRADING",
                    ms_clock_before_us=MICROSECONDS_FROM_US),
        ProductSpec("ETH-BTC", 0.0531, price_decimals=5, mean_size=0.5, trades_per_s=1.0, history=5_000,
                    first_id=400_000_001, native_id="ETHBTC", gap_rate=0.0, status="TRADING",
                    ms_clock_before_us=MICROSECONDS_FROM_US),
        ProductSpec("LUNA-USDT", 0.5, trades_per_s=0.1, history=100, native_id="LUNAUSDT", status="BREAK"),
    )
    test_products = (
        ProductSpec("BTC-USDT", 64_005.0, mean_size=0.01, trades_per_s=8.0, history=9_500,
                    first_id=5_100_000_001,
                    native_id="BTCUSDT", status="TRADING", gap_rate=0.001,
                    ms_clock_before_us=MICROSECONDS_FROM_US),
        ProductSpec("ETH-USDT", 3_401.0, mean_size=0.3, trades_per_s=4.0, history=6_100,
                    first_id=2_200_000_001,
                    native_id="ETHUSDT", status="TRADING", gap_rate=0.0,
                    ms_clock_before_us=MICROSECONDS_FROM_US),
        ProductSpec("ETH-BTC", 0.0531, price_decimals=5, mean_size=0.5, trades_per_s=1.0, history=2_300,
                    first_id=400_000_001, native_id="ETHBTC", status="TRADING", gap_rate=0.0,
                    ms_clock_before_us=MICROSECONDS_FROM_US),
        ProductSpec("LUNA-USDT", 0.5, trades_per_s=0.1, history=50, native_id="LUNAUSDT", status="BREAK"),
    )
    traded = ("BTC-USDT", "ETH-USDT", "ETH-BTC")
    # 6000 request weight per minute
    limits: ClassVar[dict[str, float]] = {"weight_limit": 6000, "weight_window_s": 60.0}
    truth_variant = True  # SchemaHub asks for microseconds

    def __init__(self, markets: Mapping[str, Market]) -> None:
        super().__init__(markets)
        self._windows: dict[str, _Window] = {}
        self._aggs = {native: _Aggregates() for native in self.markets}
        self.archive = BinanceArchive(self, self.markets)

    # -- limits ------------------------------------------------------------------------

    def admit(self, ip: str, path: str, query: Mapping[str, str],
              faults: Faults) -> tuple[Reply, str] | None:
        now = time.time()
        with self._limits_lock:
            window = self._windows.setdefault(ip, _Window())
            if now < window.banned_until:
                return self._banned(window, now), "418"
            span = faults.weight_window_s
            minute = int(now // span)
            if minute != window.minute:
                window.minute, window.used, window.refused = minute, 0, 0
            weight = WEIGHTS.get(path, 1)
            if faults.rate_limit and window.used + weight > faults.weight_limit:
                if window.refused == 0:
                    window.first_refusal = now
                window.refused += 1
                ignoring = now - window.first_refusal > IGNORE_GRACE_S
                if (ignoring and window.refused > faults.ban_after) or faults.ban_after < 0:
                    window.bans += 1
                    window.banned_until = now + faults.ban_s * 2 ** (window.bans - 1)
                    return self._banned(window, now), "418"
                retry = max(1, math.ceil((minute + 1) * span - now))
                body = {"code": -1003, "msg": f"Too much request weight used; current limit is "
                        f"{faults.weight_limit} request weight per 1 MINUTE. Please use WebSocket "
                        "Streams for live updates to avoid polling the API."}
                return json_reply(429, body, (("Retry-After", str(retry)),)), "429"
            window.used += weight
            return None

    def _banned(self, window: _Window, now: float) -> Reply:
        until_ms = int(window.banned_until * 1000)
        body = {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until_ms}. "
                "Please use WebSocket Streams for live updates to avoid bans."}
        return json_reply(418, body, (("Retry-After", str(math.ceil(window.banned_until - now))),))

    def reset_limits(self) -> None:
        with self._limits_lock:
            self._windows.clear()

    def finish(self, reply: Reply, ip: str) -> Reply:
        with self._limits_lock:
            window = self._windows.get(ip)
            used = 0 if window is None else window.used
        return Reply(reply.status, reply.body, (*reply.headers, ("x-mbx-used-weight-1m", str(used))))

    def rate_limited(self) -> Reply:
        return json_reply(429, {"code": -1003, "msg": "Too much request weight used."})

    def server_error(self, status: int) -> Reply:
        return json_reply(status, {"code": -1000, "msg": "An unknown error occurred while processing "
                                   "the request."})

    # -- routes ------------------------------------------------------------------------

    def route(self, path: str, query: Mapping[str, str], now_us: int, headers: Mapping[str, str]) -> Reply:
        micros = headers.get("x-mbx-time-unit", "").upper() == "MICROSECOND"
        if path == "/api/v3/exchangeInfo":
            return json_reply(200, self._info(now_us))
        if path == "/api/v3/klines":
            return self._klines(query, now_us, micros)
        if path not in ("/api/v3/historicalTrades", "/api/v3/trades", "/api/v3/aggTrades"):
            return json_reply(404, {"code": -1000, "msg": "Not found."})
        market = self.markets.get(query.get("symbol", ""))
        if market is None:
            return json_reply(400, {"code": -1121, "msg": "Invalid symbol."})
        try:
            limit = int(query.get("limit", "500"))
            from_id = int(query["fromId"]) if "fromId" in query else None
            start_time = int(query["startTime"]) if "startTime" in query else None
        except ValueError:
            return json_reply(400, {"code": -1100, "msg": "Illegal characters found in a parameter."})
        if not 1 <= limit <= MAX_LIMIT:
            return json_reply(400, {"code": -1130, "msg": "Invalid data sent for a parameter."})
        count = market.visible(now_us)
        if path == "/api/v3/aggTrades":
            return self._agg_trades(market, count, limit, from_id, start_time, micros)
        if path == "/api/v3/trades":
            from_id = None
        if from_id is None:
            start, stop = max(0, count - limit), count
        else:
            start = market.index_below(from_id, count)
            stop = min(count, start + limit)
        return Reply(200, self.page_bytes(market, start, stop, newest_first=False, variant=micros))

    def _klines(self, query: Mapping[str, str], now_us: int, micros: bool) -> Reply:
        """``/api/v3/klines``: 1m (or 1d) rows ``[open time, open, high, low, close, volume, close
        time, quote volume, trades, taker-buy volume, taker-buy quote volume, "0"]``."""
        market = self.markets.get(query.get("symbol", ""))
        if market is None:
            return json_reply(400, {"code": -1121, "msg": "Invalid symbol."})
        width_s = {"1m": 60, "1d": 86_400}.get(query.get("interval", ""))
        if width_s is None:
            return json_reply(400, {"code": -1120, "msg": "Invalid interval."})
        unit = 1 if micros else 1000
        try:
            limit = int(query.get("limit", "500"))
            start = int(query.get("startTime", "0")) * unit
            end = int(query["endTime"]) * unit + unit if "endTime" in query else now_us
        except ValueError:
            return json_reply(400, {"code": -1100, "msg": "Illegal characters found in a parameter."})
        if not 1 <= limit <= MAX_LIMIT:
            return json_reply(400, {"code": -1130, "msg": "Invalid data sent for a parameter."})
        spec = market.spec
        rows = []
        for b in buckets(market, market.visible(now_us), start, end, width_s, self.misreports)[:limit]:
            def text(units: int, decimals: int = spec.price_decimals) -> str:
                return decimal_text(units, decimals, 8)

            notional = spec.price_decimals + spec.size_decimals
            rows.append([b.start_us // unit, text(b.open_units), text(b.high_units), text(b.low_units),
                         text(b.close_units), text(b.volume_units, spec.size_decimals),
                         (b.start_us + width_s * 1_000_000) // unit - 1, text(b.notional_units, notional),
                         b.trades, text(b.taker_buy_units, spec.size_decimals),
                         text(b.taker_buy_notional_units, notional),
                         "0"])
        return json_reply(200, rows)

    def wire_trade(self, market: Market, trade: Trade, micros: bool = False) -> bytes:
        spec = market.spec
        quote_units = trade.price_units * trade.size_units
        quote_qty = decimal_text(quote_units, spec.price_decimals + spec.size_decimals, 8)
        when = trade.time_us if micros else trade.time_us // 1000
        maker = "true" if trade.taker_side == "sell" else "false"
        price = decimal_text(trade.price_units, spec.price_decimals, 8)
        qty = decimal_text(trade.size_units, spec.size_decimals, 8)
        return (f'{{"id":{trade.trade_id},"price":"{price}","qty":"{qty}","quoteQty":"{quote_qty}",'
                f'"time":{when},"isBuyerMaker":{maker},"isBestMatch":true}}').encode()

    def _agg_trades(self, market: Market, count: int, limit: int, from_id: int | None,
                    start_time: int | None, micros: bool) -> Reply:
        starts = self._aggregates(market, count)
        total = len(starts)
        first_agg = 1
        if from_id is not None:
            begin = max(0, from_id - first_agg)
        elif start_time is not None:
            target = start_time if micros else start_time * 1000
            begin = bisect.bisect_left(_AggTimes(market, starts), target)
        else:
            begin = max(0, total - limit)
        end = min(total, begin + limit)
        items = []
        for k in range(begin, end):
            first_index = starts[k]
            last_index = (starts[k + 1] if k + 1 < total else count) - 1
            items.append(self._aggregate(market, first_agg + k, first_index, last_index, micros))
        return Reply(200, b"[" + b",".join(items) + b"]")

    def _aggregate(self, market: Market, agg_id: int, first: int, last: int, micros: bool) -> bytes:
        spec = market.spec
        trades = [market.stream.trade(i, market.anchor_us) for i in range(first, last + 1)]
        head = trades[0]
        quantity = sum(t.size_units for t in trades)
        when = head.time_us if micros else head.time_us // 1000
        maker = "true" if head.taker_side == "sell" else "false"
        return (f'{{"a":{agg_id},"p":"{decimal_text(head.price_units, spec.price_decimals, 8)}",'
                f'"q":"{decimal_text(quantity, spec.size_decimals, 8)}","f":{head.trade_id},'
                f'"l":{trades[-1].trade_id},"T":{when},"m":{maker},"M":true}}').encode()

    def _aggregates(self, market: Market, count: int) -> array[int]:
        """Start index of every aggregate among the first ``count`` trades (grown lazily).

        The last run is only cut where the next trade differs, so an aggregate never changes
        once a later trade is visible; a still-open last run may grow, as on the exchange.
        """
        aggs = self._aggs[market.spec.native]
        with aggs.lock:
            stream = market.stream
            for i in range(aggs.scanned, count):
                if i == 0 or not (stream.offsets_us[i] == stream.offsets_us[i - 1]
                                  and stream.sides[i] == stream.sides[i - 1]
                                  and stream.prices[i] == stream.prices[i - 1]):
                    aggs.starts.append(i)
            aggs.scanned = max(aggs.scanned, count)
            return aggs.starts

    def aggregate_starts(self, market: Market, count: int) -> array[int]:
        """Index of the first trade of every aggregate among the first ``count`` trades."""
        return self._aggregates(market, count)

    def aggregate_truth(self, symbol: str, now_us: int) -> list[bytes]:
        """Every aggregate trade of ``symbol`` that exists at ``now_us`` (µs timestamps)."""
        market = self.market_of(symbol)
        count = market.visible(now_us)
        starts = self._aggregates(market, count)
        ends = [*starts[1:], count]
        return [self._aggregate(market, 1 + k, starts[k], ends[k] - 1, True) for k in range(len(starts))]

    def _info(self, now_us: int) -> dict[str, object]:
        symbols = []
        for market in self.markets.values():
            spec = market.spec
            symbols.append({
                "symbol": spec.native, "status": spec.status, "baseAsset": spec.base,
                "baseAssetPrecision": 8, "quoteAsset": spec.quote, "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False, "filters": [],
                "permissions": ["SPOT"],
            })
        return {
            "timezone": "UTC", "serverTime": now_us // 1000,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [], "symbols": symbols,
        }


class _AggTimes:
    """A sequence view of aggregate start times, for bisect."""

    def __init__(self, market: Market, starts: array[int]) -> None:
        self.market, self.starts = market, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k: int) -> int:
        return int(self.market.anchor_us + self.market.stream.offsets_us[self.starts[k]])
