"""Binance spot public REST API (``api.binance.com``).

Facts this connector relies on (../shared/reference/exchange-apis.md, section 2):

* ``/api/v3/historicalTrades?symbol&fromId&limit`` (weight 25, no key needed) returns raw
  trades ascending from ``fromId``; ids are dense per symbol, so ranges are chunked like
  Coinbase's. ``/api/v3/aggTrades`` (weight 4) is the configurable alternative
  (``SCHEMAHUB_BINANCE_ENDPOINT=aggTrades``): its ids are *aggregate* ids, a different id
  space, so a product ingested from one endpoint is never continued from the other.
* ``isBuyerMaker``/``m`` true means the buyer rested on the book: the taker SOLD.
* Timestamps are ms, or µs when the request carries ``X-MBX-TIME-UNIT: MICROSECOND``;
  we always ask for µs and record the unit in the raw header.
* Limits are request *weight* per minute per IP (6000 today; read from
  ``exchangeInfo.rateLimits`` at startup); ``X-MBX-USED-WEIGHT-1M`` reports what the IP
  used. 429 = back off (``Retry-After``); 418 = the IP is banned: stop at once.
* Cold start: ``aggTrades?startTime=T&limit=1`` names the first aggregate at/after T,
  and its ``f`` is the first trade id: one request instead of a binary search.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from schemahub.http.client import JsonResponse, shape_error
from schemahub.http.ratelimit import RateLimit
from schemahub.metrics.counters import RequestStats
from schemahub.sources.aggregates import AggregateFeed, Figure, VenueBucket, parse_rows
from schemahub.sources.base import (
    IdPagedSource,
    ListingKeys,
    Page,
    Product,
    RangeFetch,
    RawTrade,
    RequestRecord,
    TradeRef,
    listed_products,
    parse_trade_id,
)
from schemahub.sources.spec import DemoSpec, ExchangeSpec, ThrottleTest

_WEIGHT = {"historicalTrades": 25, "aggTrades": 4, "exchangeInfo": 20, "klines": 2}
"""Request weights (Binance changelog: historicalTrades 25 since 2024-04, aggTrades 4 since 2025-03)."""
_LISTING = ListingKeys(native="symbol", base="baseAsset", quote="quoteAsset", status="status",
                       tradable="TRADING")
_ID = {"historicalTrades": "id", "aggTrades": "a"}
_TIME = {"historicalTrades": "time", "aggTrades": "T"}


class Binance(IdPagedSource):
    name = "binance"
    default_base_url = "https://api.binance.com"
    endpoints = ("historicalTrades", "aggTrades")
    rate_limit = RateLimit(rate=6000 / 60, burst=6000)
    """6000 request weight per minute per IP, in a fixed one-minute window."""
    client_limit = RateLimit(rate=0.95 * 6000 / 60, burst=300)
    """burst + 60 x rate = 6000: never more than the window allows (see set_weight_budget)."""
    weight_per_minute = 6000
    used_weight_header = "x-mbx-used-weight-1m"
    request_headers = (("X-MBX-TIME-UNIT", "MICROSECOND"),)
    time_unit = "us"
    page_limit = 1000
    page_weight: ClassVar[dict[str, int]] = {"historicalTrades": _WEIGHT["historicalTrades"],
                                             "aggTrades": _WEIGHT["aggTrades"]}
    typical_latency_s = 0.25
    kept_headers = ("x-mbx-used-weight-1m", "date", "content-type")

    def list_products(self) -> list[Product]:
        return self.client.fetch("/api/v3/exchangeInfo", None, self._parse_info,
                                 weight=_WEIGHT["exchangeInfo"])

    def newest(self, product: Product, stats: RequestStats | None = None) -> TradeRef | None:
        page = self._page(product, {"limit": 1}, stats)
        if not page.trades:
            return None
        trade = page.trades[-1]
        return TradeRef(trade.trade_id, self.trade_time_us(trade.record))

    def fetch_range(self, product: Product, lo: int, hi: int,
                    stats: RequestStats | None = None) -> RangeFetch:
        result = RangeFetch(lo, hi, [])
        found: dict[int, RawTrade] = {}
        start = lo + 1
        while start <= hi:
            page = self._page(product, {"fromId": start, "limit": min(self.page_limit, hi - start + 1)},
                              stats)
            result.requests.append(page.request)
            for trade in page.trades:
                if lo < trade.trade_id <= hi:
                    found[trade.trade_id] = trade
            if not page.trades:
                break  # nothing at or after `start`: the rest of the range does not exist
            start = max(t.trade_id for t in page.trades) + 1
        result.trades = [found[i] for i in sorted(found)]
        return result

    def window_at(self, product: Product, trade_id: int,
                  stats: RequestStats | None = None) -> list[TradeRef]:
        start = max(0, trade_id - self.page_limit + 1)
        page = self._page(product, {"fromId": start, "limit": self.page_limit}, stats)
        return [TradeRef(t.trade_id, self.trade_time_us(t.record)) for t in page.trades
                if t.trade_id <= trade_id]

    def first_id_at_or_after(self, product: Product, since_us: int, head: TradeRef,
                             stats: RequestStats | None = None) -> int:
        def parse(response: JsonResponse) -> int | None:
            body = response.data
            if not isinstance(body, list):
                raise shape_error(response, self.name, "expected a JSON array of aggregate trades")
            if not body:
                return None
            first = body[0]
            key = "f" if self.endpoint == "historicalTrades" else "a"
            value = parse_trade_id(first.get(key)) if isinstance(first, dict) else None
            if value is None:
                raise shape_error(response, self.name, f"aggregate trade without {key!r}")
            return value

        params: dict[str, str | int] = {"symbol": product.native_id, "startTime": since_us, "limit": 1}
        found = self.client.fetch("/api/v3/aggTrades", params, parse, stats, weight=_WEIGHT["aggTrades"])
        return head.trade_id + 1 if found is None else min(found, head.trade_id + 1)

    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        return int(record[_TIME[self.endpoint]])

    def aggregate_feed(self) -> AggregateFeed:
        # klines count raw trades: an aggregate-trade table is compared by volume only
        figures: tuple[Figure, ...] = ("trades", "volume", "taker_buy_volume")
        return AggregateFeed("klines 1m", 60, figures if self.endpoint == "historicalTrades" else figures[1:])

    def day_aggregates(self, product: Product, day_start_us: int,
                       stats: RequestStats | None = None) -> list[VenueBucket]:
        """``/api/v3/klines?interval=1m`` (weight 2, 1000 rows a request: two per day). Rows are
        ``[open time, o, h, l, c, volume, close time, quote volume, trades, taker-buy volume, ...]``;
        times in µs (we send ``X-MBX-TIME-UNIT``)."""
        def parse(response: JsonResponse) -> list[VenueBucket]:
            return parse_rows(response, self.name, response.data, "kline", 10,
                              lambda r: VenueBucket(int(r[0]), int(r[8]), float(r[5]), float(r[9])))

        out: list[VenueBucket] = []
        start, end = day_start_us, day_start_us + 86_400_000_000 - 1
        while start <= end:
            params: dict[str, str | int] = {"symbol": product.native_id, "interval": "1m", "startTime": start,
                                            "endTime": end, "limit": 1000}
            rows = self.client.fetch("/api/v3/klines", params, parse, stats, weight=_WEIGHT["klines"])
            out.extend(rows)
            if len(rows) < 1000:
                break
            start = max(r.start_us for r in rows) + 60_000_000
        return out

    def _page(self, product: Product, params: dict[str, str | int], stats: RequestStats | None) -> Page:
        def parse(response: JsonResponse) -> Page:
            return Page(self._parse_trades(response), RequestRecord.of(response, self.kept_headers))

        return self.client.fetch(f"/api/v3/{self.endpoint}", {"symbol": product.native_id, **params}, parse,
                                 stats, weight=_WEIGHT[self.endpoint])

    def _parse_trades(self, response: JsonResponse) -> list[RawTrade]:
        body = response.data
        if not isinstance(body, list):
            raise shape_error(response, self.name, f"expected a JSON array, got {type(body).__name__}")
        id_key, time_key = _ID[self.endpoint], _TIME[self.endpoint]
        trades = []
        for record in body:
            if not isinstance(record, dict):
                raise shape_error(response, self.name, "a trade is not a JSON object")
            trade_id = parse_trade_id(record.get(id_key))
            if trade_id is None:
                raise shape_error(response, self.name, f"bad {id_key} {record.get(id_key)!r}")
            if not isinstance(record.get(time_key), int) or isinstance(record.get(time_key), bool):
                raise shape_error(response, self.name, f"trade {trade_id} has no integer {time_key}")
            trades.append(RawTrade(trade_id, record))
        trades.sort(key=lambda t: t.trade_id)
        return trades

    def _parse_info(self, response: JsonResponse) -> list[Product]:
        body = response.data
        if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
            raise shape_error(response, self.name, "exchangeInfo without a symbols list")
        for limit in body.get("rateLimits") or []:
            if (isinstance(limit, dict) and limit.get("rateLimitType") == "REQUEST_WEIGHT"
                    and limit.get("interval") == "MINUTE" and limit.get("intervalNum") == 1
                    and isinstance(limit.get("limit"), int)):
                self.client.set_weight_budget(limit["limit"])
        return listed_products(response, self.name, body["symbols"], _LISTING)


SPEC = ExchangeSpec(
    name="binance", title="Binance spot", connector=Binance,
    simulator="schemahub.simulator.binance:BinanceSim",
    archive="schemahub.sources.binance_archive:BinanceArchive",
    # 300 weight per 1-second window = 12 historicalTrades pages/s; the client is told 80.
    throttle_test=ThrottleTest({"weight_limit": 300, "weight_window_s": 1.0}, client_rate=80.0),
    ban_test={"weight_limit": 100, "weight_window_s": 60.0, "ban_after": -1, "ban_s": 300},
    demo=DemoSpec(history_scale=0.5, seed_filter="^(BTC|ETH)-USDT$", history_days=3.0),
    ceiling_trades_per_s=6000 / 60 / 25 * 1000, bench_history_scale=2.0,
)
