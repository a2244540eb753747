"""Bitfinex spot public REST API (``api-pub.bitfinex.com``, v2).

Facts this connector relies on (../shared/reference/exchange-apis.md §7.2, and the
recordings described in ../shared/fixtures/SOURCES.md):

* ``GET /v2/trades/t{PAIR}/hist?start=<ms>&limit=10000&sort=1`` returns up to 10,000
  trades with ``MTS >= start``, oldest first, as arrays ``[ID, MTS, AMOUNT, PRICE]`` of
  JSON numbers (docs.bitfinex.com/reference/rest-public-trades, as copied in
  rosssaunders/coincise ``docs/bitfinex/endpoints/public/get_trades.md``; one row recorded
  in ccxt's static test responses, ``bitfinex2.json``).
* The SIGN of AMOUNT is the taker's side (positive: the taker bought) and its absolute value
  is the quantity (ccxt's parser; the docs). The mapping reads both from AMOUNT.
* IDs are integers from one venue-wide sequence: increasing, but not dense per pair. No
  id-gap detection; completeness is by time coverage. Pages are joined at the last trade's
  millisecond: the next page starts AT that millisecond, and the trades it repeats are
  dropped by id (several trades often share one millisecond).
* Documented limit: 15 requests/min for this endpoint. Throttling arrives as HTTP 429
  ``["error", 11010, "ratelimit: error"]`` and also as HTTP 500 ``["error", null,
  "ERR_RATE_LIMIT"]`` (ccxt issues 6384, 6467, 18600): both are treated as throttling.
* Pairs: ``GET /v2/conf/pub:list:pair:exchange`` (``[["BTCUSD", "DOGE:USD", ...]]``): six
  letters are two three-letter codes, longer codes are written ``BASE:QUOTE``. Codes are
  Bitfinex's API codes (``UST`` is Tether): ``GET /v2/conf/pub:map:currency:sym`` maps
  them to the symbols people use (``UST`` -> ``USDt``), then upper case; test pairs
  (``TEST...``, ``AAABBB``) are skipped.

A raw line wraps the verbatim trade array with the id SchemaHub keys it by:
``{"id": 1560452102, "id_kind": "trade", "cursor": "1710327651000", "trade": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemahub.errors import ExchangeRejected
from schemahub.http.client import JsonResponse, shape_error
from schemahub.http.ratelimit import RateLimit
from schemahub.metrics.counters import RequestStats
from schemahub.sources.base import (
    CursorPage,
    CursorPagedSource,
    Product,
    RawTrade,
    RequestRecord,
    parse_trade_id,
)
from schemahub.sources.spec import DemoSpec, ExchangeSpec, ThrottleTest
from schemahub.sources.symbols import normalize

ALIASES = {
    "UST": "USDT",  # Bitfinex's API code for Tether USDt
    "UDC": "USDC",
    "TSD": "TUSD",
    "DSH": "DASH",
    "IOT": "IOTA",
    "BAB": "BCH",
}
"""Bitfinex API code -> common code, used where the venue's own map (``pub:map:currency:sym``)
says nothing; the venue's map wins (both documented in the README)."""

_TEST_CODES = ("AAA", "BBB")
"""Test currencies the pair list carries (the code map calls them TESTAAA, TESTBBB)."""


class Bitfinex(CursorPagedSource):
    name = "bitfinex"
    default_base_url = "https://api-pub.bitfinex.com"
    rate_limit = RateLimit(rate=15 / 60, burst=1)
    client_limit = RateLimit(rate=15 / 60, burst=1)
    dense_ids = False
    throttle_texts = ("ERR_RATE_LIMIT", "ratelimit: error")
    rate_limit_pause = 60.0  # Bitfinex asks clients to wait a minute after a rate-limit answer
    page_limit = 10_000
    typical_latency_s = 0.3
    kept_headers = ("date", "content-type")
    time_unit = "ms"

    def list_products(self) -> list[Product]:
        codes = self.client.fetch("/v2/conf/pub:map:currency:sym", None, self._parse_code_map)
        return self.client.fetch("/v2/conf/pub:list:pair:exchange", None,
                                 lambda response: self._parse_pairs(response, codes))

    @classmethod
    def cursor_at(cls, since_us: int) -> str:
        return str(-(-since_us // 1000))  # the first millisecond at/after since: MTS >= start

    def fetch_after(self, product: Product, cursor: str, stats: RequestStats | None = None) -> CursorPage:
        params: dict[str, str | int] = {"start": cursor, "limit": self.page_limit, "sort": 1}

        def parse(response: JsonResponse) -> CursorPage:
            trades = self._trades(response, cursor)
            last_ms = trades[-1].record["trade"][1] if trades else int(cursor)
            if len(trades) == self.page_limit and trades[0].record["trade"][1] == last_ms:
                raise ExchangeRejected(  # the next page would start at the same millisecond again
                    f"{self.name}: more than {self.page_limit} trades of {product.native_id} in the "
                    f"millisecond {last_ms}; this endpoint cannot page past it", exchange=self.name,
                    url=response.url, status=response.status)
            return CursorPage(trades, str(last_ms), RequestRecord.of(response, self.kept_headers),
                              dense_ids=self.dense_ids)

        return self.client.fetch(f"/v2/trades/{product.native_id}/hist", params, parse, stats)

    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        return int(record["trade"][1]) * 1000

    def estimate_pages(self, product: Product, since_us: int, stats: RequestStats | None = None) -> int:
        """The page at ``since_us``: its time span, extrapolated to the newest trade (2 requests)."""
        page = self.fetch_after(product, self.start_cursor(product, since_us), stats)
        if len(page.trades) < self.page_limit:
            return 1
        first = self.trade_time_us(page.trades[0].record)
        last = self.trade_time_us(page.trades[-1].record)
        newest = self.client.fetch(f"/v2/trades/{product.native_id}/hist", {"limit": 1, "sort": -1},
                                   lambda r: self._trades(r, "0"), stats)
        now_us = self.trade_time_us(newest[-1].record) if newest else last
        return max(1, -(-(now_us - first) // max(1, last - first)))

    def _trades(self, response: JsonResponse, cursor: str) -> list[RawTrade]:
        body = response.data
        if not isinstance(body, list):
            raise shape_error(response, self.name, f"expected a JSON array, got {type(body).__name__}")
        if body[:1] == ["error"]:
            raise ExchangeRejected(f"{self.name} answered an error: {body}", exchange=self.name,
                                   url=response.url, status=response.status)
        trades = []
        for index, row in enumerate(body):
            if not (isinstance(row, list) and len(row) == 4 and _number(row[2]) and _number(row[3])
                    and isinstance(row[1], int) and not isinstance(row[1], bool) and row[1] > 0):
                raise shape_error(response, self.name, f"trade row {index} is not [ID, MTS, AMOUNT, PRICE]")
            trade_id = parse_trade_id(row[0])
            if trade_id is None or row[2] == 0:
                raise shape_error(response, self.name, f"trade row {index} has id {row[0]!r} and amount "
                                                      f"{row[2]!r}")
            trades.append(RawTrade(trade_id, {"id": trade_id, "id_kind": "trade", "cursor": cursor,
                                              "trade": row}))
        # One venue-wide sequence: ids order trades in time, and a seam drops repeats by id.
        trades.sort(key=lambda t: t.trade_id)
        return trades

    def _parse_code_map(self, response: JsonResponse) -> dict[str, str]:
        body = response.data
        if not (isinstance(body, list) and len(body) == 1 and isinstance(body[0], list)):
            raise shape_error(response, self.name, "expected [[[code, symbol], ...]]")
        codes = dict(ALIASES)
        for pair in body[0]:
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
                codes[pair[0].upper()] = pair[1].upper()
        return codes

    def _parse_pairs(self, response: JsonResponse, codes: dict[str, str]) -> list[Product]:
        body = response.data
        if not (isinstance(body, list) and len(body) == 1 and isinstance(body[0], list)):
            raise shape_error(response, self.name, "expected [[pair, ...]]")
        products = []
        for pair in body[0]:
            if not isinstance(pair, str):
                raise shape_error(response, self.name, f"pair {pair!r} is not a string")
            base, quote = pair.split(":", 1) if ":" in pair else (pair[:3], pair[3:])
            if len(pair) != 6 and ":" not in pair:
                continue  # neither form Bitfinex documents: we cannot tell where the codes part
            if any(_is_test(code, codes) for code in (base, quote)):
                continue
            sym = normalize(base, quote, codes)
            if sym is not None:
                products.append(Product(sym, f"t{pair}", "online", True))
        return products


def _is_test(code: str, codes: Mapping[str, str]) -> bool:
    upper = code.upper()
    return upper in _TEST_CODES or codes.get(upper, upper).startswith("TEST")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


SPEC = ExchangeSpec(
    name="bitfinex", title="Bitfinex spot", connector=Bitfinex,
    simulator="schemahub.simulator.bitfinex:BitfinexSim",
    # 5/s in bursts of 2: its three products start at once, so the third request is refused
    # however slowly a loaded machine sends (20/s with bursts of 3 was never refused under load)
    throttle_test=ThrottleTest({"rate": 5.0, "burst": 2}, client_rate=60.0),
    demo=DemoSpec(history_scale=1.0, seed_filter="^(BTC|ETH)-(USD|USDT)$"),
    ceiling_trades_per_s=15 / 60 * 10_000, bench_history_scale=8.0,  # ~3 minutes: many full pages
    notes=("ids are venue-wide (not dense per pair): completeness by time, no id-gap detection",),
)
