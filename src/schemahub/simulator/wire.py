"""What every simulated exchange shares: replies, markets, cached wire bytes, ground truth."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from schemahub.simulator.market import Market, Trade


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, orjson.dumps(payload), headers)


class SimulatedExchange(ABC):
    """One exchange's API over a set of markets. Subclasses only know the wire format."""

    name: ClassVar[str]

    def __init__(self, markets: Mapping[str, Market]) -> None:
        self.markets = dict(markets)
        self._cache: dict[str, list[bytes | None]] = {symbol: [] for symbol in self.markets}
        self._cache_lock = threading.Lock()

    @abstractmethod
    def route(self, path: str, query: Mapping[str, str], now_us: int) -> Reply:
        """Answer one GET request (rate limits and faults are applied by the server)."""

    @abstractmethod
    def rate_limited(self) -> Reply: ...

    @abstractmethod
    def server_error(self, status: int) -> Reply: ...

    @abstractmethod
    def wire_trade(self, market: Market, trade: Trade) -> bytes:
        """A trade serialized exactly as this exchange sends it (one JSON value)."""

    def trade_bytes(self, market: Market, index: int) -> bytes:
        """The serialized wire form of trade ``index``, computed once and cached."""
        cache = self._cache[market.spec.symbol]
        if index < len(cache):
            cached = cache[index]
            if cached is not None:
                return cached
        data = self.wire_trade(market, market.stream.trade(index, market.anchor_us))
        with self._cache_lock:
            if len(cache) <= index:
                cache.extend([None] * (index + 1 - len(cache)))
            cache[index] = data
        return data

    def page_bytes(self, market: Market, start: int, stop: int, *, newest_first: bool) -> bytes:
        indexes = range(stop - 1, start - 1, -1) if newest_first else range(start, stop)
        return b"[" + b",".join(self.trade_bytes(market, i) for i in indexes) + b"]"

    def warm(self, now_us: int) -> None:
        """Serialize every visible trade ahead of time (benchmarks measure the client)."""
        for market in self.markets.values():
            for index in range(market.visible(now_us)):
                self.trade_bytes(market, index)

    def ground_truth(self, symbol: str, now_us: int) -> list[Any]:
        """Every trade of ``symbol`` that exists at ``now_us``, in wire form, oldest first."""
        market = self.markets[symbol]
        return [orjson.loads(self.trade_bytes(market, i)) for i in range(market.visible(now_us))]
