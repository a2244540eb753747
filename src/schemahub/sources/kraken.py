"""Kraken spot public REST API (``api.kraken.com``).

Facts this connector relies on (../shared/reference/exchange-apis.md, section 3):

* ``/0/public/Trades?pair&since&count`` returns up to 1000 trades oldest first, as
  arrays ``[price, volume, time, side, ordertype, misc, trade_id]``, under a result key
  that may differ from the pair we asked for, plus ``last``: the next cursor, a
  nanosecond timestamp as a string. We pass ``last`` back unchanged (never truncated to
  seconds) and drop trades we already have by trade id at page seams.
* ``b``/``s`` is the TAKER side. ``time`` is float seconds.
* Older responses had no ``trade_id`` (6 elements). Such rows get a deterministic id from
  their position - the page's cursor in ns (or, for a cursor before 2001, the first such
  row's time), truncated to the microsecond, plus the row's index - and are flagged
  ``id_kind = derived``. Derived ids are >= 10^18 (any time after 2001), never compared
  with real ids, and not a sequence: no gap detection.
* Errors come in the ``error`` array, sometimes with HTTP 200; ``EGeneral:Too many
  requests`` is a rate limit. About 1 request/s per IP (and per pair for Trades).
* Pairs: ``/0/public/AssetPairs``; dark-pool pairs (``.d``) are skipped; ``wsname``
  (``XBT/USDT``) names the assets, normalized through the alias table (XBT -> BTC).

A raw line wraps the verbatim trade array with the id SchemaHub keys it by:
``{"id": 10218208, "id_kind": "trade", "cursor": "1762795433971744500", "trade": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from schemahub.errors import ExchangeRejected, ExchangeUnavailable, RateLimited
from schemahub.http.client import JsonResponse, shape_error
from schemahub.http.ratelimit import RateLimit
from schemahub.metrics.counters import RequestStats
from schemahub.sources.aggregates import AggregateFeed, VenueBucket, parse_rows
from schemahub.sources.base import (
    DERIVED_ID_FLOOR,
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
    "XBT": "BTC",   # Kraken's ISO-4217-style code for bitcoin
    "XDG": "DOGE",  # Kraken's code for dogecoin
}
"""Kraken asset code -> the code in normalized symbols (documented in the README)."""

_RATE_LIMITED = ("EGeneral:Too many requests", "EAPI:Rate limit exceeded")


class Kraken(CursorPagedSource):
    name = "kraken"
    default_base_url = "https://api.kraken.com"
    rate_limit = RateLimit(rate=1.0, burst=1)
    client_limit = RateLimit(rate=1.0, burst=1)
    rate_limit_pause = 3.0  # Kraken throttles "for a few seconds or longer"
    page_limit = 1000
    typical_latency_s = 0.25
    kept_headers = ("date", "content-type")

    def list_products(self) -> list[Product]:
        return self.client.fetch("/0/public/AssetPairs", None, self._parse_pairs)

    @classmethod
    def cursor_at(cls, since_us: int) -> str:
        return str(since_us * 1000)

    def fetch_after(self, product: Product, cursor: str, stats: RequestStats | None = None) -> CursorPage:
        return self._fetch_trades(product, {"since": cursor, "count": self.page_limit}, stats)

    def _fetch_trades(self, product: Product, params: dict[str, str | int],
                      stats: RequestStats | None) -> CursorPage:
        cursor = str(params.get("since", "0"))

        def parse(response: JsonResponse) -> CursorPage:
            result = self._result(response)
            rows = [value for key, value in result.items() if key != "last"]
            last = result.get("last")
            if len(rows) != 1 or not isinstance(rows[0], list) or not isinstance(last, str | int):
                raise shape_error(response, self.name, "Trades result needs one pair and `last`")
            trades, dense = self._trades(response, rows[0], cursor)
            return CursorPage(trades, str(last), RequestRecord.of(response, self.kept_headers), dense)

        return self.client.fetch("/0/public/Trades", {"pair": product.native_id, **params}, parse, stats)

    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        return _seconds_to_us(record["trade"][2])

    def estimate_pages(self, product: Product, since_us: int, stats: RequestStats | None = None) -> int:
        """The page at ``since_us``: its time span, extrapolated to the newest trade (2 requests)."""
        page = self.fetch_after(product, str(since_us * 1000), stats)
        if len(page.trades) < self.page_limit:
            return 1
        first = self.trade_time_us(page.trades[0].record)
        last = self.trade_time_us(page.trades[-1].record)
        newest = self._fetch_trades(product, {"count": 1}, stats)
        now_us = self.trade_time_us(newest.trades[-1].record) if newest.trades else last
        return max(1, -(-(now_us - first) // max(1, last - first)))

    def _trades(self, response: JsonResponse, rows: list[Any], cursor: str) -> tuple[list[RawTrade], bool]:
        trades, dense = [], True
        base: int | None = None
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) < 6:
                raise shape_error(response, self.name, f"trade row {index} is not a 6-7 element array")
            try:
                row_us = _seconds_to_us(row[2])
            except (InvalidOperation, ValueError, TypeError):
                raise shape_error(response, self.name, f"trade row {index} has time {row[2]!r}") from None
            trade_id = parse_trade_id(row[6]) if len(row) > 6 else None
            kind = "trade"
            if trade_id is None:
                # No id (older data): the row's position - where the page starts in ns (the
                # cursor; the first such row's time if the cursor is older), cut to the µs,
                # plus its index - is deterministic for a given cursor, and orders like the stream.
                if base is None:
                    base = (int(cursor) if cursor.isdigit() else 0) // 1000 * 1000
                    if base < DERIVED_ID_FLOOR:
                        base = row_us * 1000
                    if base < DERIVED_ID_FLOOR:
                        raise shape_error(response, self.name, f"trade row {index} is dated before 2001")
                trade_id, kind, dense = base + index, "derived", False
            record = {"id": trade_id, "id_kind": kind, "cursor": cursor, "trade": row}
            trades.append(RawTrade(trade_id, record))
        return trades, dense

    def aggregate_feed(self) -> AggregateFeed:
        # 1-minute OHLC reaches back only 720 minutes; daily rows 720 days: one row per day
        return AggregateFeed("OHLC 1d", 86_400, ("trades", "volume"))

    def day_aggregates(self, product: Product, day_start_us: int,
                       stats: RequestStats | None = None) -> list[VenueBucket]:
        """``/0/public/OHLC?interval=1440&since=``: rows ``[time s, o, h, l, c, vwap, volume,
        count]`` under the pair's key (docs.kraken.com, "Historical data")."""
        def parse(response: JsonResponse) -> list[VenueBucket]:
            result = self._result(response)
            rows: Any = next((v for k, v in result.items() if k != "last"), [])  # under the pair's key
            return parse_rows(response, self.name, rows, "OHLC", 8,
                              lambda r: VenueBucket(int(r[0]) * 1_000_000, int(r[7]), float(r[6])))

        params: dict[str, str | int] = {"pair": product.native_id, "interval": 1440,
                                        "since": day_start_us // 1_000_000 - 1}
        rows = self.client.fetch("/0/public/OHLC", params, parse, stats)
        return [r for r in rows if r.start_us == day_start_us]

    def _result(self, response: JsonResponse) -> dict[str, Any]:
        body = response.data
        if not isinstance(body, dict):
            raise shape_error(response, self.name, "expected a JSON object with error and result")
        errors = body.get("error") or []
        if errors:
            self._raise(response, [str(e) for e in errors])
        result = body.get("result")
        if not isinstance(result, dict):
            raise shape_error(response, self.name, "no result object")
        return result

    def _raise(self, response: JsonResponse, errors: list[str]) -> None:
        text = "; ".join(errors)
        where = {"exchange": self.name, "url": response.url, "status": response.status}
        if any(e.startswith(_RATE_LIMITED) for e in errors):
            raise RateLimited(f"{self.name} rate limit hit: {text}", **where)  # type: ignore[arg-type]
        if any(e.startswith(("EQuery:", "EGeneral:Invalid")) for e in errors):
            raise ExchangeRejected(f"{self.name} rejected {response.url}: {text}", **where)  # type: ignore[arg-type]
        raise ExchangeUnavailable(f"{self.name} answered with errors: {text}", **where)  # type: ignore[arg-type]

    def _parse_pairs(self, response: JsonResponse) -> list[Product]:
        products = []
        for key, info in self._result(response).items():
            if key.endswith(".d") or not isinstance(info, dict):
                continue  # dark-pool pairs trade off the book and have no wsname
            wsname = info.get("wsname")
            if not isinstance(wsname, str) or "/" not in wsname:
                continue
            base, quote = wsname.split("/", 1)
            sym = normalize(base, quote, ALIASES)
            if sym is None:
                continue
            status = str(info.get("status", "online"))
            products.append(Product(sym, str(info.get("altname") or key), status, status == "online"))
        return products


def _seconds_to_us(value: Any) -> int:
    """Float seconds (as Kraken's JSON number text) to µs, truncated - never via a binary float."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    return int(Decimal(str(value)) * 1_000_000)


SPEC = ExchangeSpec(
    name="kraken", title="Kraken spot", connector=Kraken,
    simulator="schemahub.simulator.kraken:KrakenSim",
    # 5 requests/s, bursts of 2: the first moments of a three-product run are refused however
    # slowly a loaded machine sends them (20/s with bursts of 3 sometimes never refused 11 requests)
    throttle_test=ThrottleTest({"rate": 5.0, "burst": 2}, client_rate=60.0),
    demo=DemoSpec(history_scale=0.6, seed_filter="^(BTC|ETH)-USD$"),
    ceiling_trades_per_s=1 * 1000, bench_history_scale=2.0,
)
