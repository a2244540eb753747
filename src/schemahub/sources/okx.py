"""OKX spot public REST API (``www.okx.com``, v5).

Facts this connector relies on (../shared/reference/exchange-apis.md §4.1 and §7.1, and
the recordings described in ../shared/fixtures/SOURCES.md):

* ``GET /api/v5/market/history-trades?instId=&type=1&after=<tradeId>&limit=100`` returns
  up to 100 trades with ``tradeId < after``, newest first (without ``after``: the newest
  page) - OKX's "Get trades history" docs; nautilus_trader pages backwards the same way
  (``crates/adapters/okx/src/http/client.rs``), because ``before`` alone is not honoured.
  It reaches about three months back.
* ``{"code": "0", "msg": "", "data": [{instId, side, sz, px, tradeId, ts}]}``: every
  value a string, ``ts`` in ms, ``side`` the TAKER's side (nautilus maps it straight to the
  aggressor), ``tradeId`` a per-instrument integer sequence. Unknown fields (a later
  ``source``) are kept verbatim and ignored.
* 20 requests / 2 s per IP. Throttling: HTTP 429, or ``code`` 50011 in the body.
* Instruments: ``GET /api/v5/public/instruments?instType=SPOT``; ``baseCcy``/``quoteCcy``
  name the assets, ``state`` ``live`` is tradable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemahub.errors import ExchangeRejected, ExchangeUnavailable, RateLimited
from schemahub.http.client import JsonResponse, shape_error
from schemahub.http.ratelimit import RateLimit
from schemahub.metrics.counters import RequestStats
from schemahub.sources.aggregates import AggregateFeed, VenueBucket, parse_rows
from schemahub.sources.base import (
    DescendingIdSource,
    ListingKeys,
    Page,
    Product,
    RawTrade,
    RequestRecord,
    listed_products,
    parse_trade_id,
)
from schemahub.sources.spec import DemoSpec, ExchangeSpec, ThrottleTest

_RATE_LIMITED = {"50011", "50061"}
"""Codes OKX answers when a client sends too many requests."""
_LISTING = ListingKeys(native="instId", base="baseCcy", quote="quoteCcy", status="state", tradable="live")
_REJECTED_PREFIX = "51"
"""51xxx: the request itself is wrong (unknown instrument, bad parameter)."""


class Okx(DescendingIdSource):
    name = "okx"
    default_base_url = "https://www.okx.com"
    rate_limit = RateLimit(rate=10.0, burst=20)
    # The same rate with a smaller burst: jitter between our bucket and theirs never throttles.
    client_limit = RateLimit(rate=10.0, burst=12)
    page_limit = 100
    typical_latency_s = 0.25
    kept_headers = ("date", "content-type")

    def list_products(self) -> list[Product]:
        return self.client.fetch("/api/v5/public/instruments", {"instType": "SPOT"}, self._parse_instruments)

    def aggregate_feed(self) -> AggregateFeed:
        return AggregateFeed("candles 1m", 60, ("volume",))

    def day_aggregates(self, product: Product, day_start_us: int,
                       stats: RequestStats | None = None) -> list[VenueBucket]:
        """``/api/v5/market/history-candles?bar=1m``: rows ``[ts ms, o, h, l, c, vol, volCcy,
        volCcyQuote, confirm]``, newest first, 100 a request (15 per day), paged with ``after``
        (older than) and ``before`` (newer than); ``vol`` is in the base currency for spot."""
        def parse(response: JsonResponse) -> list[VenueBucket]:
            return parse_rows(response, self.name, self._data(response), "candle", 6,
                              lambda r: VenueBucket(int(r[0]) * 1000, None, float(r[5])))

        out: list[VenueBucket] = []
        first_ms, after = day_start_us // 1000, (day_start_us + 86_400_000_000) // 1000
        while True:
            params: dict[str, str | int] = {"instId": product.native_id, "bar": "1m", "after": after,
                                            "before": first_ms - 1, "limit": 100}
            rows = self.client.fetch("/api/v5/market/history-candles", params, parse, stats)
            out.extend(r for r in rows if r.start_us >= day_start_us)
            if len(rows) < 100:
                return out
            after = min(r.start_us for r in rows) // 1000

    def page_below(self, product: Product, below: int | None, limit: int,
                   stats: RequestStats | None = None) -> Page:
        params: dict[str, str | int] = {"instId": product.native_id, "type": 1, "limit": limit}
        if below is not None:
            params["after"] = below

        def parse(response: JsonResponse) -> Page:
            return Page(self._trades(response, product, below), RequestRecord.of(response, self.kept_headers))

        return self.client.fetch("/api/v5/market/history-trades", params, parse, stats)

    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        return int(record["ts"]) * 1000

    def _data(self, response: JsonResponse) -> list[Any]:
        body = response.data
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            raise shape_error(response, self.name, "expected an object with a string code")
        code = body["code"]
        if code != "0":
            text = f"{self.name} answered code {code}: {body.get('msg', '')}"
            where = {"exchange": self.name, "url": response.url, "status": response.status}
            if code in _RATE_LIMITED:
                raise RateLimited(text, **where)  # type: ignore[arg-type]
            if code.startswith(_REJECTED_PREFIX):
                raise ExchangeRejected(text, **where)  # type: ignore[arg-type]
            raise ExchangeUnavailable(text, **where)  # type: ignore[arg-type]
        data = body.get("data")
        if not isinstance(data, list):
            raise shape_error(response, self.name, "no data array")
        return data

    def _trades(self, response: JsonResponse, product: Product, below: int | None) -> list[RawTrade]:
        trades = []
        for record in self._data(response):
            if not isinstance(record, dict):
                raise shape_error(response, self.name, "a trade is not a JSON object")
            trade_id = parse_trade_id(record.get("tradeId"))
            if trade_id is None:
                raise shape_error(response, self.name, f"bad tradeId {record.get('tradeId')!r}")
            if below is not None and trade_id >= below:
                raise shape_error(response, self.name, f"tradeId {trade_id} is not below the cursor {below}")
            if record.get("instId") != product.native_id:
                raise shape_error(response, self.name, f"trade {trade_id} is of {record.get('instId')!r}")
            ts = record.get("ts")
            if not (isinstance(ts, str) and ts.isascii() and ts.isdigit()):
                raise shape_error(response, self.name, f"trade {trade_id} has ts {ts!r}")
            trades.append(RawTrade(trade_id, record))
        return trades

    def _parse_instruments(self, response: JsonResponse) -> list[Product]:
        return listed_products(response, self.name, self._data(response), _LISTING)


SPEC = ExchangeSpec(
    name="okx", title="OKX spot", connector=Okx,
    simulator="schemahub.simulator.okx:OkxSim",
    archive="schemahub.sources.okx_archive:OkxArchive",
    throttle_test=ThrottleTest({"rate": 40.0, "burst": 5}, client_rate=120.0),
    demo=DemoSpec(history_scale=0.5, seed_filter="^(BTC|ETH)-USDT$", history_days=3.0),
    ceiling_trades_per_s=10 * 100, bench_history_scale=3.0,
    notes=("REST reaches about three months back; older days come from the daily archives",),
)
