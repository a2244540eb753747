"""The venues' own per-interval aggregates: an independent source to check a day against.

A venue's klines, candles or OHLC rows are computed by the exchange from its own trade
records, not from what SchemaHub ingested, so agreeing with them is evidence that a day is
complete. Each venue that publishes aggregates describes them once with an
:class:`AggregateFeed` (what it reports, at which interval, how exact) and fetches them in
its connector (``TradeSource.day_aggregates``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from schemahub.http.client import JsonResponse, shape_error

Figure = Literal["trades", "volume", "taker_buy_volume"]


@dataclass(frozen=True)
class VenueBucket:
    """One interval as the venue reports it; None: the venue does not report that figure."""

    start_us: int
    trades: int | None
    volume: float
    taker_buy_volume: float | None = None


@dataclass(frozen=True)
class AggregateFeed:
    name: str
    """What the venue calls it, for reports: "klines 1m"."""
    interval_s: int
    figures: tuple[Figure, ...]
    """What is compared. A trade count is compared exactly."""
    volume_tolerance: float = 1e-8
    """Absolute difference in base units allowed per interval, on top of a 1e-9 relative one:
    the venue rounds volumes to this many decimals (8 at Binance and Kraken), or sends
    binary floats (Coinbase)."""

    def agrees(self, figure: Figure, ours: float, theirs: float) -> bool:
        if figure == "trades":
            return ours == theirs
        return abs(ours - theirs) <= self.volume_tolerance + 1e-9 * max(abs(ours), abs(theirs))


def parse_rows(response: JsonResponse, venue: str, rows: Any, what: str, width: int,
               bucket: Callable[[list[Any]], VenueBucket]) -> list[VenueBucket]:
    """A venue's aggregate rows (arrays of at least ``width`` values) as buckets; anything else
    is a malformed answer (retried like a truncated body), never a crash."""
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) >= width for r in rows):
        raise shape_error(response, venue, f"expected a JSON array of {what} arrays")
    try:
        return [bucket(r) for r in rows]
    except (TypeError, ValueError) as exc:
        raise shape_error(response, venue, f"unreadable {what}: {exc}") from exc
