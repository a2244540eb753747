"""Coinbase Exchange's public REST API, simulated with its real wire format.

Shapes follow the recordings in ../shared/fixtures/coinbase/ (checked by a test):
``/products`` is one JSON array of product objects with string numbers and boolean
flags; ``/products/{id}/trades`` is a JSON array, newest first, of
``{"trade_id", "side", "size", "price", "time"}`` where ``side`` is the MAKER side.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemahub.simulator.market import Market, Trade
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply

MAX_LIMIT = 1000


class CoinbaseSim(SimulatedExchange):
    name = "coinbase"

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

