"""Coinbase Exchange public REST API (``api.exchange.coinbase.com``).

Facts this connector relies on (see ../shared/reference/exchange-apis.md, section 1):

* ``GET /products/{id}/trades`` pages newest first, ``limit`` <= 1000; ``after=X`` returns
  trades with ``trade_id < X``. ``CB-BEFORE``/``CB-AFTER`` carry the newest/oldest id.
* ``trade_id`` is a per-product integer sequence, sent as a JSON number or (seen in real
  recordings) a string. Ids are dense in practice; an id missing from a page that
  reaches below it was skipped by the exchange.
* ``side`` is the MAKER's side. We keep it verbatim here; the transform inverts it.
* Public limit: 10 requests/s per IP, bursts of 15; 429 with ``{"message": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemahub.http.client import JsonResponse, shape_error
from schemahub.http.ratelimit import RateLimit
from schemahub.metrics.counters import RequestStats
from schemahub.sources.aggregates import AggregateFeed, VenueBucket, parse_rows
from schemahub.sources.base import (
    DescendingIdSource,
    Page,
    Product,
    RawTrade,
    RequestRecord,
    parse_trade_id,
)
from schemahub.sources.spec import DemoSpec, ExchangeSpec, ThrottleTest
from schemahub.sources.symbols import normalize
from schemahub.timeutil import iso_to_us, us_to_iso


class Coinbase(DescendingIdSource):
    name = "coinbase"
    default_base_url = "https://api.exchange.coinbase.com"
    rate_limit = RateLimit(rate=10.0, burst=15)
    # Same rate, burst 10: five of the exchange's 15 tokens stay unused, so network jitter
    # between our bucket and theirs never turns into a 429.
    client_limit = RateLimit(rate=10.0, burst=10)
    page_limit = 1000
    typical_latency_s = 0.25
    kept_headers = ("cb-before", "cb-after", "date", "content-type")

    def list_products(self) -> list[Product]:
        return self.client.fetch("/products", None, self._parse_products)

    def page_below(self, product: Product, below: int | None, limit: int,
                   stats: RequestStats | None = None) -> Page:
        params: dict[str, str | int] = {"limit": limit} if below is None else {"after": below, "limit": limit}
        return self._page(product, params, stats, below)

    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        return iso_to_us(record["time"])

    def aggregate_feed(self) -> AggregateFeed:
        return AggregateFeed("candles 1m", 60, ("volume",))

    def day_aggregates(self, product: Product, day_start_us: int,
                       stats: RequestStats | None = None) -> list[VenueBucket]:
        """``/products/{id}/candles?granularity=60``: rows ``[time s, low, high, open, close,
        volume]``, at most 300 a request (five per day); no trade count."""
        def parse(response: JsonResponse) -> list[VenueBucket]:
            return parse_rows(response, self.name, response.data, "candle", 6,
                              lambda r: VenueBucket(int(r[0]) * 1_000_000, None, float(r[5])))

        out: list[VenueBucket] = []
        for part in range(0, 86_400, 300 * 60):
            start = day_start_us + part * 1_000_000
            params: dict[str, str | int] = {"granularity": 60, "start": us_to_iso(start),
                                            "end": us_to_iso(start + (300 * 60 - 1) * 1_000_000)}
            rows = self.client.fetch(f"/products/{product.native_id}/candles", params, parse, stats)
            end = min(start + 300 * 60_000_000, day_start_us + 86_400_000_000)
            out.extend(r for r in rows if start <= r.start_us < end)
        return out

    def _page(self, product: Product, params: dict[str, str | int], stats: RequestStats | None,
              below: int | None = None) -> Page:
        def parse(response: JsonResponse) -> Page:
            return Page(self._parse_trades(response, below),
                        RequestRecord.of(response, self.kept_headers))

        return self.client.fetch(f"/products/{product.native_id}/trades", params, parse, stats)

    def _parse_trades(self, response: JsonResponse, below: int | None) -> list[RawTrade]:
        body = response.data
        if not isinstance(body, list):
            raise shape_error(response, self.name, f"expected a JSON array, got {type(body).__name__}")
        trades = []
        for record in body:
            if not isinstance(record, dict):
                raise shape_error(response, self.name, "a trade is not a JSON object")
            trade_id = parse_trade_id(record.get("trade_id"))
            if trade_id is None:
                raise shape_error(response, self.name, f"bad trade_id {record.get('trade_id')!r}")
            if below is not None and trade_id >= below:
                raise shape_error(response, self.name, f"trade_id {trade_id} is not below the cursor {below}")
            if not isinstance(record.get("time"), str):
                raise shape_error(response, self.name, f"trade {trade_id} has no time string")
            trades.append(RawTrade(trade_id, record))
        self._check_times(response, trades)
        return trades

    def _check_times(self, response: JsonResponse, trades: list[RawTrade]) -> None:
        """Parse the edge times now, so a garbled time fails (and is retried) at the fetch."""
        for trade in (trades[:1] + trades[-1:]):
            try:
                self.trade_time_us(trade.record)
            except ValueError as exc:
                raise shape_error(response, self.name,
                                  f"trade {trade.trade_id} has an unreadable time: {exc}") from exc

    def _parse_products(self, response: JsonResponse) -> list[Product]:
        body = response.data
        if not isinstance(body, list):
            raise shape_error(response, self.name, "expected a JSON array of products")
        products = []
        for item in body:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise shape_error(response, self.name, "a product has no string id")
            native = item["id"]
            base, _, quote = native.partition("-")  # ids are BASE-QUOTE (BTCAUCTION-USD too)
            sym = normalize(str(item.get("base_currency") or base), str(item.get("quote_currency") or quote))
            if sym is None:
                continue  # an id we could not store safely; it cannot be ingested anyway
            status = str(item.get("status", ""))
            tradable = (status == "online" and not item.get("trading_disabled", False)
                        and not item.get("cancel_only", False))
            products.append(Product(sym, native, status, tradable))
        return products


SPEC = ExchangeSpec(
    name="coinbase", title="Coinbase Exchange", connector=Coinbase,
    simulator="schemahub.simulator.coinbase:CoinbaseSim",
    throttle_test=ThrottleTest({"rate": 40.0, "burst": 5}, client_rate=120.0),
    demo=DemoSpec(history_scale=2.5, seed_filter="^(BTC|ETH|SOL)-USD$"),
    ceiling_trades_per_s=10 * 1000, bench_history_scale=1.7,
)
