"""A day against the venue's own aggregates: the certificates' independent evidence.

The trades table is summed per interval of the venue's feed (Binance klines: 1 minute,
Coinbase candles: 1 minute, Kraken OHLC: 1 day) and compared figure by figure with what the
venue publishes; an interval missing on one side counts as zero trades. A trade count is
compared exactly, volumes within the feed's tolerance. The result names the intervals that
differ (the first few, with both figures), so a disagreement points at the minute to look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any, Protocol

from schemahub.query.engine import QueryEngine
from schemahub.sources.aggregates import AggregateFeed, VenueBucket
from schemahub.timeutil import us_to_iso

SHOWN = 10
"""Differing intervals a certificate lists (it counts them all)."""

OUR_BUCKETS_SQL = """
SELECT symbol, trade_date AS day, epoch_us(trade_ts) // $width * $width AS start_us,
       count(*) AS trades, sum(quantity) AS volume,
       coalesce(sum(quantity) FILTER (WHERE side = 'buy'), 0) AS taker_buy_volume
FROM trades WHERE exchange = $exchange AND trade_date IN (SELECT unnest($days::DATE[]))
GROUP BY ALL
"""


class AggregateSource(Protocol):
    """Where a venue's aggregates come from (the exchange's API, through its connector)."""

    def feed(self, exchange: str) -> AggregateFeed | None:
        """The venue's feed; None: it publishes none (the certificate says ``not_available``)."""

    def day(self, exchange: str, symbol: str, day: date) -> list[VenueBucket]:
        """The venue's intervals of one UTC day; raises ``SchemahubError`` when unreachable."""


def our_buckets(engine: QueryEngine, exchange: str, days: Iterable[date],
                width_s: int) -> dict[tuple[str, date], dict[int, dict[str, Any]]]:
    """(symbol, day) -> interval start (µs) -> our trades, volume and taker-buy volume."""
    out: dict[tuple[str, date], dict[int, dict[str, Any]]] = {}
    params = {"exchange": exchange, "days": sorted(days), "width": width_s * 1_000_000}
    for row in engine.sql(OUR_BUCKETS_SQL, params).to_pylist():
        out.setdefault((row["symbol"], row["day"]), {})[row["start_us"]] = row
    return out


def compare(feed: AggregateFeed, ours: dict[int, dict[str, Any]],
            theirs: list[VenueBucket]) -> dict[str, Any]:
    """The cross-check entry of a certificate: ``agrees`` or ``disagrees``, with the differences."""
    venue = {b.start_us: b for b in theirs}
    differences = []
    for start in sorted(set(ours) | set(venue)):
        mine, their = ours.get(start), venue.get(start)
        for figure in feed.figures:
            a = float(mine[figure]) if mine else 0.0
            b = float(getattr(their, figure) or 0) if their else 0.0
            if not feed.agrees(figure, a, b):
                differences.append({"interval": us_to_iso(start), "figure": figure,
                                    "ours": _plain(a, figure), "venue": _plain(b, figure)})
    return {"source": feed.name, "result": "disagrees" if differences else "agrees",
            "intervals": len(set(ours) | set(venue)), "figures": list(feed.figures),
            "differences": len(differences), "first_differences": differences[:SHOWN]}


def unavailable(feed: AggregateFeed, error: str) -> dict[str, Any]:
    return {"source": feed.name, "result": "unavailable", "error": error}


NOT_AVAILABLE: dict[str, Any] = {"result": "not_available"}


def _plain(value: float, figure: str) -> float | int:
    return int(value) if figure == "trades" else value
