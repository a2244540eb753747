"""Coinbase Exchange's public REST API, simulated with its real wire format.

Shapes follow the recordings in ../shared/fixtures/coinbase/ (checked by a test):
``/products`` is one JSON array of product objects with string numbers and boolean
flags; ``/products/{id}/trades`` is a JSON array, newest first, of
``{"trade_id", "side", "size", "price", "time"}`` where ``side`` is the MAKER side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from schemahub.simulator.aggregates import buckets
from schemahub.simulator.market import Market, ProductSpec, Trade
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply
from schemahub.timeutil import iso_to_us

MAX_LIMIT = 1000


class CoinbaseSim(SimulatedExchange):
    name = "coinbase"
    default_products = (
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
    )
    test_products = (
        ProductSpec("BTC-USD", 64_000.0, mean_size=0.02, trades_per_s=6.0, history=12_345,
                    first_id=700_000_001, gap_rate=0.002),
        ProductSpec("SOL-USD", 150.0, price_decimals=3, size_decimals=6, mean_size=8.0, trades_per_s=3.0,
                    history=7_500, first_id=90_000_001, id_format="mixed", gap_rate=0.001),
        ProductSpec("BTC-USDT", 64_010.0, mean_size=0.01, trades_per_s=1.0, history=4_200,
                    first_id=18_500_001, id_format="string", gap_rate=0.0),
        ProductSpec("OLD-USD", 1.0, trades_per_s=0.1, history=50, status="delisted", trading_disabled=True),
    )
    traded = ("BTC-USD", "SOL-USD", "BTC-USDT")
    limits: ClassVar[dict[str, float]] = {"rate": 10.0, "burst": 15}  # 10 req/s per IP, bursts of 15

    def route(self, path: str, query: Mapping[str, str], now_us: int, headers: Mapping[str, str]) -> Reply:
        parts = path.strip("/").split("/")
        if parts == ["products"]:
            return json_reply(200, [self._product(m) for m in self.markets.values()])
        if len(parts) in (2, 3) and parts[0] == "products":
            market = self.markets.get(parts[1].upper())
            if market is None:
                return json_reply(404, {"message": "NotFound"})
            if len(parts) == 2:
                return json_reply(200, self._product(market))
            if parts[2] == "trades":
                return self._trades(market, query, now_us)
            if parts[2] == "candles":
                return self._candles(market, query, now_us)
        return json_reply(404, {"message": "NotFound"})

    def rate_limited(self) -> Reply:
        return json_reply(429, {"message": "Public rate limit exceeded"})

    def server_error(self, status: int) -> Reply:
        return json_reply(status, {"message": "Internal server error" if status == 500 else
                                   "Service Unavailable"})

    def wire_trade(self, market: Market, trade: Trade, variant: bool = False) -> bytes:
        fmt = market.spec.id_format
        as_string = fmt == "string" or (fmt == "mixed" and trade.trade_id % 2 == 1)
        trade_id = f'"{trade.trade_id}"' if as_string else str(trade.trade_id)
        # Field order as in the real recording; every value is ASCII digits/letters.
        return (f'{{"trade_id":{trade_id},"side":"{trade.maker_side}","size":"{trade.size}",'
                f'"price":"{trade.price}","time":"{trade.iso_time}"}}').encode()

    def _candles(self, market: Market, query: Mapping[str, str], now_us: int) -> Reply:
        """``/products/{id}/candles``: ``[time s, low, high, open, close, volume]`` rows, newest
        first, at most 300 per request (docs.cdp.coinbase.com, "Get product candles")."""
        granularity = _int_param(query, "granularity", 60)
        if granularity not in (60, 300, 900, 3600, 21600, 86400):
            return json_reply(400, {"message": "Unsupported granularity"})
        try:
            start = iso_to_us(query["start"]) if "start" in query else now_us - 300 * granularity * 10**6
            end = iso_to_us(query["end"]) if "end" in query else now_us
        except ValueError:
            return json_reply(400, {"message": "Invalid start or end"})
        if (end - start) // (granularity * 10**6) > 300:
            return json_reply(400, {"message": "granularity too small for the requested time range. "
                                    "Count of aggregations requested exceeds 300"})
        spec = market.spec
        width = granularity * 10**6
        end = end - end % width + width  # every candle that starts by `end`, whole
        rows = [[b.start_us // 10**6, b.low_units / 10**spec.price_decimals,
                 b.high_units / 10**spec.price_decimals, b.open_units / 10**spec.price_decimals,
                 b.close_units / 10**spec.price_decimals, b.volume_units / 10**spec.size_decimals]
                for b in buckets(market, market.visible(now_us), start, end, granularity, self.misreports)]
        return json_reply(200, rows[::-1])

    def _trades(self, market: Market, query: Mapping[str, str], now_us: int) -> Reply:
        limit = _int_param(query, "limit", MAX_LIMIT)
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            return json_reply(400, {"message": f"limit must be between 1 and {MAX_LIMIT}"})
        count = market.visible(now_us)
        if "after" in query:
            after = _int_param(query, "after", 0)
            if after is None:
                return json_reply(400, {"message": "Invalid after cursor"})
            stop = market.index_below(after, count)  # ids < after
            start = max(0, stop - limit)
        elif "before" in query:
            before = _int_param(query, "before", 0)
            if before is None:
                return json_reply(400, {"message": "Invalid before cursor"})
            start = market.index_below(before + 1, count)  # ids > before, the adjacent page
            stop = min(count, start + limit)
        else:
            stop, start = count, max(0, count - limit)
        body = self.page_bytes(market, start, stop, newest_first=True)
        headers: list[tuple[str, str]] = []
        if stop > start:
            ids = market.stream.ids
            headers = [("cb-before", str(ids[stop - 1])), ("cb-after", str(ids[start]))]
        return Reply(200, body, tuple(headers))

    def _product(self, market: Market) -> dict[str, object]:
        spec = market.spec
        return {
            "id": spec.symbol,
            "base_currency": spec.base,
            "quote_currency": spec.quote,
            "base_min_size": "0.00000001",
            "base_max_size": "1000000",
            "quote_increment": _step(spec.price_decimals),
            "base_increment": _step(spec.size_decimals),
            "display_name": f"{spec.base}/{spec.quote}",
            "min_market_funds": "1",
            "max_market_funds": "1000000",
            "margin_enabled": False,
            "post_only": False,
            "limit_only": False,
            "cancel_only": spec.cancel_only,
            "trading_disabled": spec.trading_disabled,
            "status": spec.status,
            "status_message": "",
            "fx_stablecoin": False,
            "max_slippage_percentage": "0.03000000",
            "auction_mode": False,
        }


def _step(decimals: int) -> str:
    return "1" if decimals == 0 else "0." + "0" * (decimals - 1) + "1"


def _int_param(query: Mapping[str, str], name: str, default: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        return None

