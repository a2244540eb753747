"""Kraken spot public REST API (``api.kraken.com``).

Facts this connector relies on (../shared/reference/exchange-apis.md, section 3):

* ``/0/public/Trades?pair&since&count`` returns up to 1000 trades oldest first, as
  arrays ``[price, volume, time, side, ordertype, misc, trade_id]``, under a result key
  that may differ from the pair we asked for, plus ``last``: the next cursor, a
  nanosecond timestamp as a string. We pass ``last`` back unchanged (never truncated to
  seconds) and drop trades we already have by trade id at page seams.
* ``b``/``s`` is the TAKER side. ``time`` is float seconds.
* Older responses had no ``trade_id`` (6 elements). Such rows get a deterministic id from
  their position - the page's cursor and the row's index in it - and are flagged
  ``id_kind = derived``; their ids are not a sequence, so no gap detection.
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
from schemahub.http.client import JsonResponse, RequestStats, shape_error
from schemahub.http.ratelimit import RateLimit
from schemahub.sources.base import (
    CursorPage,
    CursorPagedSource,
    Product,
    RawTrade,
    RequestRecord,
    parse_trade_id,
)
from schemahub.sources.symbols import normalize

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

    def start_cursor(self, product: Product, since_us: int) -> str:
        return str(since_us * 1000)

    def fetch_after(self, product: Product, cursor: str, stats: RequestStats | None = None) -> CursorPage:
        def parse(response: JsonResponse) -> CursorPage:
            result = self._result(response)
            rows = [value for key, value in result.items() if key != "last"]
            last = result.get("last")
            if len(rows) != 1 or not isinstance(rows[0], list) or not isinstance(last, str | int):
                raise shape_error(response, self.name, "Trades result needs one pair and `last`")
            trades, dense = self._trades(response, rows[0], cursor)
            return CursorPage(trades, str(last), RequestRecord.of(response, self.kept_headers), dense)

        params: dict[str, str | int] = {"pair": product.native_id, "since": cursor, "count": self.page_limit}
        return self.client.fetch("/0/public/Trades", params, parse, stats)

    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        return _seconds_to_us(record["trade"][2])

    def _trades(self, response: JsonResponse, rows: list[Any], cursor: str) -> tuple[list[RawTrade], bool]:
        trades, dense = [], True
        base = int(cursor) // 1000 * 1000 if cursor.isdigit() else 0
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) < 6:
                raise shape_error(response, self.name, f"trade row {index} is not a 6-7 element array")
            try:
                _seconds_to_us(row[2])
            except (InvalidOperation, ValueError, TypeError):
                raise shape_error(response, self.name, f"trade row {index} has time {row[2]!r}") from None
            trade_id = parse_trade_id(row[6]) if len(row) > 6 else None
            kind = "trade"
            if trade_id is None:
                # No id (older data): the row's position - page cursor (in µs, x1000) plus its
                # index - is deterministic for a given cursor, and orders like the stream.
                trade_id, kind, dense = base + index, "derived", False
            record = {"id": trade_id, "id_kind": kind, "cursor": cursor, "trade": row}
            trades.append(RawTrade(trade_id, record))
        return trades, dense

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
            sym = normalize(base, quote)
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
