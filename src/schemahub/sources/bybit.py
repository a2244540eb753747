"""Bybit spot: products from the v5 REST API, trades from the daily public archive.

Facts this connector relies on (../shared/reference/exchange-apis.md §4.2 and §7.3, and
the recordings described in ../shared/fixtures/SOURCES.md):

* ``GET /v5/market/recent-trade`` serves only the latest trades (no cursor, no time), so it
  cannot backfill anything: history comes from ``public.bybit.com`` (``sources.bybit_archive``),
  one file per symbol and UTC day, published the next day.
* ``GET /v5/market/instruments-info?category=spot`` →
  ``{"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [{symbol, baseCoin,
  quoteCoin, status, ...}], "nextPageCursor": ""}, "retExtInfo": {}, "time": <ms>}``
  (nautilus_trader's recorded spot instruments); ``status`` ``Trading`` is tradable, and a
  ``nextPageCursor`` is followed.
* Limits: 600 requests / 5 s per IP over all of api.bybit.com; beyond it HTTP 403 "access
  too frequent" and a wait of at least ten minutes (Bybit's rate-limit docs): treated as a
  ban of 600 s. ``retCode`` 10006 (too many visits) is throttling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemahub.errors import ExchangeRejected, ExchangeUnavailable, RateLimited
from schemahub.http.client import JsonResponse, shape_error
from schemahub.http.ratelimit import RateLimit
from schemahub.sources.base import ArchiveOnlySource, ListingKeys, Product, listed_products
from schemahub.sources.spec import DemoSpec, ExchangeSpec, ThrottleTest

_LISTING = ListingKeys(native="symbol", base="baseCoin", quote="quoteCoin", status="status",
                       tradable="Trading")
_THROTTLED = {10006, 10018}
"""retCodes of too many requests (per UID / per IP)."""


class Bybit(ArchiveOnlySource):
    name = "bybit"
    default_base_url = "https://api.bybit.com"
    rate_limit = RateLimit(rate=120.0, burst=600)
    client_limit = RateLimit(rate=50.0, burst=20)
    ban_answer = (403, "access too frequent", 600.0)
    page_limit = 1  # (no REST pages of trades: files only)
    time_unit = "ms"

    def list_products(self) -> list[Product]:
        products: list[Product] = []
        cursor = ""
        for _ in range(100):  # pages of instruments; spot has fit in one so far
            params: dict[str, str | int] = {"category": "spot", "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page, cursor = self.client.fetch("/v5/market/instruments-info", params, self._instruments)
            products += page
            if not cursor:
                return products
        raise ExchangeUnavailable(f"{self.name}: instruments-info kept paging after 100 pages",
                                  exchange=self.name, url="/v5/market/instruments-info")

    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        return int(record["timestamp"]) * 1000

    def _instruments(self, response: JsonResponse) -> tuple[list[Product], str]:
        body = response.data
        if not isinstance(body, dict) or not isinstance(body.get("retCode"), int):
            raise shape_error(response, self.name, "expected an object with an integer retCode")
        code = body["retCode"]
        if code != 0:
            text = f"{self.name} answered retCode {code}: {body.get('retMsg', '')}"
            where = {"exchange": self.name, "url": response.url, "status": response.status}
            if code in _THROTTLED:
                raise RateLimited(text, **where)  # type: ignore[arg-type]
            raise ExchangeRejected(text, **where)  # type: ignore[arg-type]
        result = body.get("result")
        if not isinstance(result, dict):
            raise shape_error(response, self.name, "no result object")
        products = listed_products(response, self.name, result.get("list"), _LISTING)
        cursor = result.get("nextPageCursor")
        return products, cursor if isinstance(cursor, str) else ""


SPEC = ExchangeSpec(
    name="bybit", title="Bybit spot", connector=Bybit,
    simulator="schemahub.simulator.bybit:BybitSim",
    archive="schemahub.sources.bybit_archive:BybitArchive",
    throttle_test=ThrottleTest({"rate": 2.0, "burst": 1}, client_rate=60.0),
    demo=DemoSpec(history_scale=1.0, seed_filter="^(BTC|ETH)-USDT$", history_days=3.0),
    notes=("history from the daily archive only (published the next day); ids are per day",),
)
