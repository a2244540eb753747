"""What every simulated exchange shares: replies, markets, cached wire bytes, ground truth,
and the default admission control (a per-IP token bucket)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from schemahub.http.ratelimit import TokenBucket
from schemahub.simulator.aggregates import Misreports
from schemahub.simulator.market import Market, ProductSpec, Trade

if TYPE_CHECKING:
    from schemahub.simulator.archive import ArchiveHost
    from schemahub.simulator.server import Faults


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    file: Path | None = None
    """Send this file's bytes instead of ``body`` (big archive files, streamed)."""
    flip_byte: bool = False
    """Corrupt one byte in the middle (what a bad disk or proxy does): a checksum mismatch."""
    stop_halfway: bool = False
    """Announce the full length and hang up halfway (a truncated download)."""
    bytes_per_s: float | None = None
    """Send no faster than this (a slow download)."""


def json_reply(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, orjson.dumps(payload), headers)


class SimulatedExchange(ABC):
    """One exchange's API over a set of markets. Subclasses only know the wire format."""

    archive: ArchiveHost | None = None
    """The venue's bulk-archive host (served on the same port, outside the API's limits)."""

    name: ClassVar[str]
    default_products: ClassVar[tuple[ProductSpec, ...]]
    """What ``schemahub simulate`` and the demo serve, named the exchange's way."""
    test_products: ClassVar[tuple[ProductSpec, ...]]
    """Smaller histories (and gaps) for the contract suite."""
    traded: ClassVar[tuple[str, ...]]
    """Test products with real trade ids that the generic tests ingest."""
    limits: ClassVar[dict[str, float]]
    """What the simulator enforces per IP by default (``Faults`` fields): the documented limits."""
    incremental_step_s: ClassVar[float] = 900.0
    """How far the contract suite moves the clock between two runs for new trades to exist
    (a day for a venue whose trades appear only in the next day's archive file)."""

    def __init__(self, markets: Mapping[str, Market]) -> None:
        self.markets = dict(markets)
        """Native product id -> market."""
        self._cache: dict[str, list[bytes | None]] = {
            m.spec.symbol + variant: [] for m in self.markets.values() for variant in ("", "/v")}
        self._cache_lock = threading.Lock()
        self._limits_lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self.withheld: dict[str, tuple[int, int]] = {}
        """Symbol -> an id range (inclusive) the API leaves out of its trade pages for now: a
        transient hole that a later request (after ``withheld`` is cleared) serves."""
        self.misreports = Misreports()
        """Figures the venue's own aggregates (klines, candles, OHLC) get wrong on purpose."""

    @abstractmethod
    def route(self, path: str, query: Mapping[str, str], now_us: int, headers: Mapping[str, str]) -> Reply:
        """Answer one GET request (admission control and faults are applied before)."""

    @abstractmethod
    def rate_limited(self) -> Reply: ...

    def admit(self, ip: str, path: str, query: Mapping[str, str],
              faults: Faults) -> tuple[Reply, str] | None:
        """None to let the request through, or the refusal and its kind ("429", "418").

        Default: a per-IP token bucket in real time (not the market clock, so limits hold
        while a test freezes the market).
        """
        if not faults.rate_limit:
            return None
        with self._limits_lock:
            bucket = self._buckets.get(ip)
            if bucket is None:
                bucket = self._buckets[ip] = TokenBucket(faults.rate, faults.burst)
        return None if bucket.try_take() else (self.rate_limited(), "429")

    def reset_limits(self) -> None:
        with self._limits_lock:
            self._buckets.clear()

    def finish(self, reply: Reply, ip: str) -> Reply:
        """Last touch on every answer (Binance adds its used-weight header here)."""
        return reply

    def market_of(self, symbol: str) -> Market:
        """The market of a normalized symbol."""
        for market in self.markets.values():
            if market.spec.symbol == symbol:
                return market
        raise KeyError(symbol)

    @abstractmethod
    def server_error(self, status: int) -> Reply: ...

    truth_variant: ClassVar[bool] = False
    """The wire variant SchemaHub asks for (Binance: microsecond timestamps)."""

    @abstractmethod
    def wire_trade(self, market: Market, trade: Trade, variant: bool = False) -> bytes:
        """A trade serialized exactly as this exchange sends it (one JSON value)."""

    def trade_bytes(self, market: Market, index: int, variant: bool = False) -> bytes:
        """The serialized wire form of trade ``index``, computed once and cached."""
        cache = self._cache[market.spec.symbol + ("/v" if variant else "")]
        if index < len(cache):
            cached = cache[index]
            if cached is not None:
                return cached
        data = self.wire_trade(market, market.stream.trade(index, market.anchor_us), variant)
        with self._cache_lock:
            if len(cache) <= index:
                cache.extend([None] * (index + 1 - len(cache)))
            cache[index] = data
        return data

    def page_bytes(self, market: Market, start: int, stop: int, *, newest_first: bool,
                   variant: bool = False) -> bytes:
        indexes: Iterable[int] = range(stop - 1, start - 1, -1) if newest_first else range(start, stop)
        hole = self.withheld.get(market.spec.symbol)
        if hole is not None:
            ids = market.stream.ids
            indexes = [i for i in indexes if not hole[0] <= ids[i] <= hole[1]]
        return b"[" + b",".join(self.trade_bytes(market, i, variant) for i in indexes) + b"]"

    def warm(self, now_us: int) -> None:
        """Serialize every visible trade ahead of time (benchmarks measure the client)."""
        for market in self.markets.values():
            for index in range(market.visible(now_us)):
                self.trade_bytes(market, index, self.truth_variant)

    def ground_truth(self, symbol: str, now_us: int) -> list[Any]:
        """Every trade of ``symbol`` that exists at ``now_us``, as SchemaHub is served it."""
        market = self.market_of(symbol)
        return [orjson.loads(self.trade_bytes(market, i, self.truth_variant))
                for i in range(market.visible(now_us))]
