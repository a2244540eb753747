"""The venues' own aggregates (klines, candles, OHLC), computed from the simulator's ground truth.

Exchanges publish per-interval aggregates of their trades; SchemaHub's certificates compare
them with the table (an independent source). The simulator computes them from exactly the
trades it serves, in exact integer units, so they agree with a complete table; a test makes
one venue report a different figure with :attr:`Misreports` (a disagreement must be found).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from schemahub.simulator.market import Market


@dataclass
class Bucket:
    """One interval's aggregate, in the product's integer units (price x size for notional)."""

    start_us: int
    trades: int = 0
    volume_units: int = 0
    taker_buy_units: int = 0
    notional_units: int = 0
    taker_buy_notional_units: int = 0
    open_units: int = 0
    high_units: int = 0
    low_units: int = 0
    close_units: int = 0


@dataclass
class Misreports:
    """Extra trades a venue claims in one bucket: ``(symbol, bucket start in s) -> n``.

    Each extra trade adds one to the count and one whole unit of the base currency to the
    volume (a volume-only venue disagrees too)."""

    extra: dict[tuple[str, int], int] = field(default_factory=dict)


def buckets(market: Market, visible: int, start_us: int, end_us: int, interval_s: int,
            misreports: Misreports | None = None) -> list[Bucket]:
    """The non-empty intervals in [start_us, end_us) of the first ``visible`` trades, ascending."""
    stream = market.stream
    anchor = market.anchor_us
    lo = bisect.bisect_left(stream.offsets_us, start_us - anchor, 0, visible)
    hi = bisect.bisect_left(stream.offsets_us, end_us - anchor, lo, visible)
    width = interval_s * 1_000_000
    out: dict[int, Bucket] = {}
    for index in range(lo, hi):
        trade = stream.trade(index, anchor)
        begin = trade.time_us - trade.time_us % width
        bucket = out.get(begin)
        if bucket is None:
            bucket = out[begin] = Bucket(begin, open_units=trade.price_units, high_units=trade.price_units,
                                         low_units=trade.price_units)
        bucket.trades += 1
        bucket.volume_units += trade.size_units
        bucket.notional_units += trade.size_units * trade.price_units
        if trade.taker_side == "buy":
            bucket.taker_buy_units += trade.size_units
            bucket.taker_buy_notional_units += trade.size_units * trade.price_units
        bucket.high_units = max(bucket.high_units, trade.price_units)
        bucket.low_units = min(bucket.low_units, trade.price_units)
        bucket.close_units = trade.price_units
    for (symbol, begin_s), extra in (misreports.extra if misreports else {}).items():
        bucket = out.get(begin_s * 1_000_000)
        if symbol == market.spec.symbol and bucket is not None:
            bucket.trades += extra
            bucket.volume_units += extra * 10 ** market.spec.size_decimals
    return [out[k] for k in sorted(out)]
