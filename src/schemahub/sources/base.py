"""What an exchange connector provides. Connectors fetch and validate; they never normalize.

Two kinds of pagination, two kinds of connector:

* ``IdPagedSource`` - per-product trade ids are dense integers (Coinbase, Binance). The
  engine fetches id ranges (``fetch_range``) concurrently from the newest trade
  (``newest``) back to the watermark, and finds a cold start with
  ``first_id_at_or_after`` (a binary search over ``window_at`` unless the exchange can
  answer it directly).
* ``CursorPagedSource`` - the exchange hands out an opaque cursor with each page
  (Kraken's nanosecond ``last``). Pages are fetched one after another
  (``fetch_after``), starting from ``start_cursor``.
* ``ArchiveOnlySource`` - the REST API serves no history at all (Bybit spot): trades come
  from the venue's daily archive files alone; the connector lists products.

Trades stay verbatim (``RawTrade.record`` is what the raw line will hold); only the id
is parsed, because watermarks and gap detection need numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from schemahub.http.client import ExchangeClient, JsonResponse
from schemahub.http.ratelimit import RateLimit
from schemahub.identifiers import Symbol
from schemahub.metrics.counters import RequestStats
from schemahub.sources.aggregates import AggregateFeed, VenueBucket

DERIVED_ID_FLOOR = 10**18
"""Ids a connector derives for rows that came without one are >= this (positions in time,
in ns); real exchange ids are far below it. The two kinds are never compared."""


def is_derived(trade_id: int) -> bool:
    return trade_id >= DERIVED_ID_FLOOR


@dataclass(frozen=True)
class Product:
    symbol: Symbol
    """Normalized ``BASE-QUOTE``."""
    native_id: str
    """The exchange's own product id, used in requests."""
    status: str
    tradable: bool


@dataclass(frozen=True)
class RawTrade:
    trade_id: int
    record: Mapping[str, Any]


@dataclass(frozen=True)
class TradeRef:
    trade_id: int
    time_us: int


class RequestRecord(BaseModel):
    """What we keep about one HTTP request for the audit trail (raw file headers carry them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    """Redacted: never a credential or a signature."""
    status: int
    fetched_at: datetime
    elapsed_ms: float
    headers: dict[str, str]

    @classmethod
    def of(cls, response: JsonResponse, kept_headers: tuple[str, ...]) -> RequestRecord:
        headers = {h: response.headers[h] for h in kept_headers if h in response.headers}
        return cls(url=response.url, status=response.status, fetched_at=response.fetched_at,
                   elapsed_ms=round(response.elapsed * 1000, 3), headers=headers)


@dataclass(frozen=True)
class Page:
    trades: list[RawTrade]
    request: RequestRecord


@dataclass(frozen=True)
class CursorPage:
    """One page of a cursor-paged exchange: its trades (ascending) and the next cursor."""

    trades: list[RawTrade]
    next_cursor: str
    request: RequestRecord
    dense_ids: bool = True
    """False when the ids are not the exchange's sequence (derived ids): no gap detection."""


@dataclass
class RangeFetch:
    """Every trade the exchange has with ``lo < trade_id <= hi``, ascending, no duplicates."""

    lo: int
    hi: int
    trades: list[RawTrade]
    requests: list[RequestRecord] = field(default_factory=list)

    def missing_ranges(self) -> list[tuple[int, int]]:
        """Ids in (lo, hi] the exchange did not return, as inclusive ranges."""
        gaps: list[tuple[int, int]] = []
        expected = self.lo + 1
        for trade in self.trades:
            if trade.trade_id > expected:
                gaps.append((expected, trade.trade_id - 1))
            expected = trade.trade_id + 1
        if expected <= self.hi:
            gaps.append((expected, self.hi))
        return gaps


class TradeSource(ABC):
    """One exchange's public trade API."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    paging: ClassVar[Literal["ids", "cursor", "archive"]]
    rate_limit: ClassVar[RateLimit]
    """The exchange's documented public limit (requests, or request weight, per second)."""
    client_limit: ClassVar[RateLimit]
    """What we run by default: at most the documented limit, with a margin for jitter."""
    dense_ids: ClassVar[bool] = True
    """Trade ids are a per-product sequence, so a missing id is a gap (False: Bitfinex's ids
    are venue-wide; completeness is by time coverage, and ``check`` does not count ids)."""
    endpoints: ClassVar[tuple[str, ...]] = ("trades",)
    """The trade endpoints this connector can ingest from; the first is the default."""
    page_limit: ClassVar[int]
    typical_latency_s: ClassVar[float] = 0.25
    """Typical request latency, used to size concurrency by Little's law."""
    kept_headers: ClassVar[tuple[str, ...]] = ()
    """Response headers worth keeping in the raw metadata."""
    request_headers: ClassVar[tuple[tuple[str, str], ...]] = ()
    used_weight_header: ClassVar[str | None] = None
    weight_per_minute: ClassVar[int | None] = None
    ban_answer: ClassVar[tuple[int, str, float] | None] = None
    """(HTTP status, body text, seconds): the answer that means this IP is banned for that long
    (Bybit: 403 "access too frequent", ten minutes). Binance's 418 is always a ban."""
    throttle_texts: ClassVar[tuple[str, ...]] = ()
    """Error-body texts that mean throttling whatever the HTTP status (Bitfinex: a 500)."""
    rate_limit_pause: ClassVar[float] = 1.0
    """Seconds every thread pauses after a rate-limit answer without Retry-After."""
    time_unit: ClassVar[str | None] = None
    """Unit of integer timestamps in the raw records (recorded in the raw header)."""
    page_weight: ClassVar[dict[str, int]] = {}
    """Weight of one page request per endpoint, where the exchange weighs requests (else 1)."""

    @classmethod
    def page_requests_per_second(cls, endpoint: str, bucket_rate: float | None = None) -> float | None:
        """Trade pages per second a limiter of ``bucket_rate`` tokens/s allows (default: our
        client limit); None: no limit. The basis of Little's-law concurrency and estimates."""
        rate = cls.client_limit.rate if bucket_rate is None else bucket_rate
        return None if rate is None else rate / cls.page_weight.get(endpoint, 1)

    def __init__(self, client: ExchangeClient, endpoint: str | None = None) -> None:
        self.client = client
        self.endpoint = endpoint or self.endpoints[0]
        if self.endpoint not in self.endpoints:
            raise ValueError(f"{self.name} has no endpoint {self.endpoint!r}")

    @abstractmethod
    def list_products(self) -> list[Product]: ...

    @abstractmethod
    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        """The trade's execution time in microseconds since the epoch (UTC)."""

    def aggregate_feed(self) -> AggregateFeed | None:
        """The venue's own per-interval aggregates, where it publishes them (the certificates'
        independent cross-check); None: it publishes none we use."""
        return None

    def day_aggregates(self, product: Product, day_start_us: int,
                       stats: RequestStats | None = None) -> list[VenueBucket]:
        """The venue's aggregates of the UTC day starting at ``day_start_us`` (non-empty
        intervals, any order). Only called when ``aggregate_feed`` is not None."""
        raise NotImplementedError(f"{self.name} publishes no aggregates")


class IdPagedSource(TradeSource):
    """An exchange whose per-product trade ids are dense integers."""

    paging = "ids"

    @abstractmethod
    def newest(self, product: Product, stats: RequestStats | None = None) -> TradeRef | None:
        """The most recent trade, or None if the product never traded."""

    @abstractmethod
    def fetch_range(self, product: Product, lo: int, hi: int,
                    stats: RequestStats | None = None) -> RangeFetch:
        """Every trade with ``lo < trade_id <= hi`` (ids the exchange skipped are absent)."""

    @abstractmethod
    def window_at(self, product: Product, trade_id: int,
                  stats: RequestStats | None = None) -> list[TradeRef]:
        """Trades near ``trade_id`` (at most one page, all with ids <= ``trade_id``), ascending."""

    def first_id_at_or_after(self, product: Product, since_us: int, head: TradeRef,
                             stats: RequestStats | None = None) -> int:
        """The first trade id at/after ``since_us`` (``head.trade_id + 1`` if none).

        By default a binary search over ``window_at``; connectors whose exchange can
        answer it in one request override this.
        """
        return first_id_at_or_after(lambda i: self.window_at(product, i, stats), head, since_us)


class DescendingIdSource(IdPagedSource):
    """Dense ids paged newest first below a cursor id (Coinbase's and OKX's ``after``): the
    connector answers ``page_below``; the head, ranges and windows are built on it here."""

    @abstractmethod
    def page_below(self, product: Product, below: int | None, limit: int,
                   stats: RequestStats | None = None) -> Page:
        """Up to ``limit`` trades with ids < ``below`` (the newest when None), newest first."""

    def newest(self, product: Product, stats: RequestStats | None = None) -> TradeRef | None:
        page = self.page_below(product, None, 1, stats)
        if not page.trades:
            return None
        trade = page.trades[0]
        return TradeRef(trade.trade_id, self.trade_time_us(trade.record))

    def fetch_range(self, product: Product, lo: int, hi: int,
                    stats: RequestStats | None = None) -> RangeFetch:
        result = RangeFetch(lo, hi, [])
        found: dict[int, RawTrade] = {}
        cursor = hi + 1
        while True:
            page = self.page_below(product, cursor, self.page_limit, stats)
            result.requests.append(page.request)
            for trade in page.trades:
                if trade.trade_id > lo:
                    found[trade.trade_id] = trade
            if len(page.trades) < self.page_limit:
                break  # a short page means history starts here
            oldest = min(t.trade_id for t in page.trades)
            if oldest <= lo + 1:
                break
            cursor = oldest  # more than a page of ids in range: keep walking back
        result.trades = [found[i] for i in sorted(found)]
        return result

    def window_at(self, product: Product, trade_id: int,
                  stats: RequestStats | None = None) -> list[TradeRef]:
        page = self.page_below(product, trade_id + 1, self.page_limit, stats)
        refs = [TradeRef(t.trade_id, self.trade_time_us(t.record)) for t in page.trades]
        refs.sort(key=lambda r: r.trade_id)
        return refs


class CursorPagedSource(TradeSource):
    """An exchange that pages trades by an opaque cursor, oldest first."""

    paging = "cursor"

    @classmethod
    @abstractmethod
    def cursor_at(cls, since_us: int) -> str:
        """The cursor of the first page at/after ``since_us`` (the same for every product)."""

    def start_cursor(self, product: Product, since_us: int) -> str:
        """The cursor of the first page of ``product`` at/after ``since_us``."""
        return self.cursor_at(since_us)

    @abstractmethod
    def fetch_after(self, product: Product, cursor: str, stats: RequestStats | None = None) -> CursorPage:
        """The page of trades that follows ``cursor``."""

    @abstractmethod
    def estimate_pages(self, product: Product, since_us: int, stats: RequestStats | None = None) -> int:
        """About how many pages from ``since_us`` to now (for a dry run's plan)."""


@dataclass(frozen=True)
class ListingKeys:
    """Where a venue's product list keeps the fields SchemaHub needs (one object per product)."""

    native: str
    base: str
    quote: str
    status: str
    tradable: str
    """The status value of a product that trades now."""


def listed_products(response: JsonResponse, exchange: str, items: object, keys: ListingKeys) -> list[Product]:
    """Products from a list of objects naming base and quote assets (symbols from the venue's
    own metadata, never split from the native id); entries we could not store are left out."""
    from schemahub.http.client import shape_error
    from schemahub.sources.symbols import normalize

    if not isinstance(items, list):
        raise shape_error(response, exchange, "the product list is not an array")
    products = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(keys.native), str):
            raise shape_error(response, exchange, f"a product has no string {keys.native}")
        sym = normalize(str(item.get(keys.base, "")), str(item.get(keys.quote, "")))
        if sym is None:
            continue
        status = str(item.get(keys.status, ""))
        products.append(Product(sym, item[keys.native], status, status == keys.tradable))
    return products


def parse_trade_id(value: object) -> int | None:
    """A trade id sent as a JSON number or a decimal string; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


def first_id_at_or_after(window: Callable[[int], list[TradeRef]], head: TradeRef, target_us: int) -> int:
    """The smallest trade id whose time is >= ``target_us`` (``head.trade_id + 1`` if none).

    ``window(i)`` returns, ascending, the trades with ids <= i that one page holds. Trade
    times never decrease with the id, so a binary search over pages finds the answer
    in about log2(head / page) requests; the final page pins it down exactly.
    """
    if head.time_us < target_us:
        return head.trade_id + 1
    lo, hi = 0, head.trade_id  # invariant: ids <= lo are before target; id hi is at/after it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        refs = window(mid)
        if not refs:
            lo = mid  # nothing at or below mid exists
            continue
        if refs[-1].time_us < target_us:
            lo = mid  # everything up to mid is earlier (ids between refs[-1] and mid do not exist)
            continue
        first = next(r.trade_id for r in refs if r.time_us >= target_us)
        if first > refs[0].trade_id:
            return first  # the page holds both sides of the boundary
        hi = first  # the whole page is at/after target: look further back
    return hi


class ArchiveOnlySource(TradeSource):
    """A venue whose history exists only as daily archive files (its ``ExchangeSpec.archive``):
    the REST API lists products; ``ingest.daily`` covers the days."""

    paging = "archive"
    dense_ids = False  # ids are numbered per day's file: no sequence across days
