"""What an exchange connector provides. Connectors fetch and validate; they never normalize.

A connector turns the exchange's pagination into three primitives the ingest engine
builds on: the newest trade (``newest``), every trade in an id range (``fetch_range``),
and a window of trades around an id (``window_at``, for time -> id search). Trades stay
verbatim (``RawTrade.record`` is the exchange's JSON object); only the id is parsed,
because watermarks and gap detection need numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from schemahub.http.client import ExchangeClient, JsonResponse, RequestStats
from schemahub.http.ratelimit import RateLimit
from schemahub.identifiers import Symbol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


@dataclass(frozen=True)
class RequestRecord:
    """What we keep about one HTTP exchange for the audit trail."""

    url: str
    status: int
    fetched_at: datetime
    elapsed_ms: float
    headers: dict[str, str]

    @classmethod
    def of(cls, response: JsonResponse, kept_headers: tuple[str, ...]) -> RequestRecord:
        headers = {h: response.headers[h] for h in kept_headers if h in response.headers}
        return cls(response.url, response.status, response.fetched_at,
                   round(response.elapsed * 1000, 3), headers)


@dataclass(frozen=True)
class Page:
    trades: list[RawTrade]
    request: RequestRecord


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
    rate_limit: ClassVar[RateLimit]
    """The exchange's documented public limit."""
    limiter_headroom: ClassVar[int] = 0
    """Tokens of the exchange's burst we leave unused to absorb network jitter."""
    page_limit: ClassVar[int]
    typical_latency_s: ClassVar[float] = 0.25
    """Typical request latency, used to size concurrency by Little's law."""
    kept_headers: ClassVar[tuple[str, ...]] = ()
    """Response headers worth keeping in the raw metadata."""

    def __init__(self, client: ExchangeClient) -> None:
        self.client = client

    @abstractmethod
    def list_products(self) -> list[Product]: ...

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

    @abstractmethod
    def trade_time_us(self, record: Mapping[str, Any]) -> int:
        """The trade's execution time in microseconds since the epoch (UTC)."""


def parse_trade_id(value: object) -> int | None:
    """A trade id sent as a JSON number or a decimal string; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


def iso_to_us(text: str) -> int:
    """ISO-8601 UTC time with 0-6 fractional digits to epoch microseconds (exact)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def us_to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)
