"""Kraken spot's public REST API, simulated with its real wire format and semantics.

Shapes follow the recordings in ../shared/fixtures/kraken/ (checked by a test). Every
answer is ``{"error": [...], "result": {...}}``; errors - a throttled IP included
(``EGeneral:Too many requests``) - arrive with HTTP 200. Trades come oldest first as
``[price, volume, time, side, ordertype, misc, trade_id]`` under the pair's key, with
``last`` = the nanosecond time of the page's last trade. ``since`` is exclusive on that
nanosecond clock, which tells apart fills of one order within a microsecond. A product
with ``legacy_ids`` serves the old 6-element rows (no trade id).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import ClassVar

import orjson

from schemahub.simulator.aggregates import buckets
from schemahub.simulator.market import Market, ProductSpec, TimeView, Trade, decimal_text
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply

MAX_COUNT = 1000


def _ns(trade: Trade) -> int:
    return trade.time_us * 1000 + trade.rank * 100


class KrakenSim(SimulatedExchange):
    name = "kraken"
    default_products = (
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
    )
    test_products = (
        ProductSpec("BTC-USD", 63_990.0, price_decimals=1, mean_size=0.02, trades_per_s=2.0, history=4_500,
                    first_id=80_000_001, native_id="XXBTZUSD", base_code="XBT", quote_code="USD",
                    gap_rate=0.001),
        ProductSpec("BTC-USDT", 64_001.0, price_decimals=1, mean_size=0.01, trades_per_s=0.5, history=2_100,
                    first_id=10_218_208, native_id="XBTUSDT", base_code="XBT", quote_code="USDT",
                    gap_rate=0.0),
        ProductSpec("DOGE-USD", 0.16, price_decimals=5, size_decimals=1, mean_size=900.0, trades_per_s=0.3,
                    history=1_200, first_id=9_000_001, native_id="XDGUSD", base_code="XDG", quote_code="USD",
                    gap_rate=0.0),
        ProductSpec("LTC-USD", 70.0, mean_size=1.0, trades_per_s=0.2, history=1_500, first_id=1,
                    native_id="XLTCZUSD", base_code="LTC", quote_code="USD", legacy_ids=True, gap_rate=0.0),
    )
    traded = ("BTC-USD", "BTC-USDT", "DOGE-USD")
    # "about 1 per second"; a little slack for jitter
    limits: ClassVar[dict[str, float]] = {"rate": 1.0, "burst": 2}

    def rate_limited(self) -> Reply:
        return json_reply(200, {"error": ["EGeneral:Too many requests"], "result": {}})

    def server_error(self, status: int) -> Reply:
        return json_reply(status, {"error": ["EService:Unavailable"], "result": {}})

    def route(self, path: str, query: Mapping[str, str], now_us: int, headers: Mapping[str, str]) -> Reply:
        if path == "/0/public/AssetPairs":
            return json_reply(200, {"error": [], "result": self._pairs()})
        if path == "/0/public/OHLC":
            return self._ohlc(query, now_us)
        if path != "/0/public/Trades":
            return json_reply(404, {"error": ["EGeneral:Unknown method"], "result": {}})
        market = self._find(query.get("pair", ""))
        if market is None:
            return json_reply(200, {"error": ["EQuery:Unknown asset pair"], "result": {}})
        try:
            count = int(query.get("count", str(MAX_COUNT)))
            since = int(query["since"]) if "since" in query else None
        except ValueError:
            return json_reply(200, {"error": ["EGeneral:Invalid arguments"], "result": {}})
        if not 1 <= count <= MAX_COUNT:
            return json_reply(200, {"error": ["EGeneral:Invalid arguments:count"], "result": {}})
        visible = market.visible(now_us)
        if since is None:
            start = max(0, visible - count)
        else:
            start = bisect.bisect_right(TimeView(market, visible, _ns), since)  # exclusive
        stop = min(visible, start + count)
        rows = self.page_bytes(market, start, stop, newest_first=False)
        last = _ns(market.stream.trade(stop - 1, market.anchor_us)) if stop > start else (since or 0)
        key = orjson.dumps(market.spec.native_id or market.spec.native).decode()
        body = b'{"error":[],"result":{%s:%s,"last":"%d"}}' % (key.encode(), rows, last)
        return Reply(200, body)

    def wire_trade(self, market: Market, trade: Trade, variant: bool = False) -> bytes:
        spec = market.spec
        ns = _ns(trade)
        seconds = f"{ns // 1_000_000_000}.{ns % 1_000_000_000 // 100:07d}"  # 100 ns resolution
        side = "b" if trade.taker_side == "buy" else "s"
        order = "l" if trade.trade_id % 3 == 0 else "m"
        row = (f'["{decimal_text(trade.price_units, spec.price_decimals, 5)}",'
               f'"{decimal_text(trade.size_units, spec.size_decimals, 8)}",{seconds},"{side}","{order}",""')
        legacy = spec.legacy_ids or trade.trade_id < spec.legacy_below_id
        return (row + ("]" if legacy else f",{trade.trade_id}]")).encode()

    def _ohlc(self, query: Mapping[str, str], now_us: int) -> Reply:
        """``/0/public/OHLC``: the last 720 intervals at most, rows ``[time s, open, high, low,
        close, vwap, volume, count]`` (docs.kraken.com, "Historical data")."""
        market = self._find(query.get("pair", ""))
        if market is None:
            return json_reply(200, {"error": ["EQuery:Unknown asset pair"], "result": {}})
        try:
            minutes = int(query.get("interval", "1"))
            since_s = int(query.get("since", "0"))
        except ValueError:
            return json_reply(200, {"error": ["EGeneral:Invalid arguments"], "result": {}})
        if minutes not in (1, 5, 15, 30, 60, 240, 1440, 10080, 21600):
            return json_reply(200, {"error": ["EGeneral:Invalid arguments:interval"], "result": {}})
        width_us = minutes * 60 * 10**6
        oldest = (now_us - now_us % width_us) - 719 * width_us
        spec = market.spec
        rows = []
        def price(units: int) -> str:
            return decimal_text(units, spec.price_decimals, spec.price_decimals)

        for b in buckets(market, market.visible(now_us), max(oldest, since_s * 10**6), now_us, minutes * 60,
                         self.misreports):
            rows.append([b.start_us // 10**6, price(b.open_units), price(b.high_units), price(b.low_units),
                         price(b.close_units), price(b.notional_units // max(1, b.volume_units)),
                         decimal_text(b.volume_units, spec.size_decimals, 8), b.trades])
        last = rows[-1][0] if rows else since_s
        return json_reply(200, {"error": [], "result": {spec.native_id or spec.native: rows, "last": last}})

    def _find(self, pair: str) -> Market | None:
        for key, market in self.markets.items():
            if pair in (key, market.spec.native_id, _altname(market)):
                return market
        return None

    def _pairs(self) -> dict[str, object]:
        pairs: dict[str, object] = {}
        for key, market in self.markets.items():
            spec = market.spec
            info = {
                "altname": _altname(market), "wsname": f"{spec.base}/{spec.quote}", "aclass_base": "currency",
                "base": _legacy(spec.base), "aclass_quote": "currency", "quote": _legacy(spec.quote),
                "lot": "unit", "cost_decimals": 5, "pair_decimals": spec.price_decimals,
                "lot_decimals": spec.size_decimals, "lot_multiplier": 1, "leverage_buy": [],
                "leverage_sell": [], "fees": [[0, 0.4]], "fees_maker": [[0, 0.25]],
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                "ordermin": "0.0001", "costmin": "0.5", "tick_size": decimal_text(1, spec.price_decimals, 5),
                "status": spec.status, "long_position_limit": 0, "short_position_limit": 0,
            }
            pairs[key] = info
            if spec.base == "XBT":
                dark = {k: v for k, v in info.items() if k != "wsname"}  # dark pools have no wsname
                pairs[key + ".d"] = {**dark, "altname": _altname(market) + ".d"}
        return pairs


def _altname(market: Market) -> str:
    return market.spec.base + market.spec.quote


def _legacy(code: str) -> str:
    """Kraken's old four-letter asset codes: XXBT, ZUSD."""
    if len(code) != 3:
        return code
    return ("Z" if code in ("USD", "EUR", "GBP", "JPY", "CAD") else "X") + code

