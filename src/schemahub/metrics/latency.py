"""Latency quantiles from a fixed-bucket histogram (the buckets RequestStats counts in)."""

from __future__ import annotations

from collections.abc import Sequence

from schemahub.metrics.counters import LATENCY_BUCKETS


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile in seconds, interpolated linearly inside its bucket (as Prometheus'
    ``histogram_quantile`` does); None without observations. The last bucket is +Inf: a
    quantile that falls in it is reported as the largest finite bound."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            lower = LATENCY_BUCKETS[index - 1] if index else 0.0
            upper = LATENCY_BUCKETS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return LATENCY_BUCKETS[-1]


def merge(histograms: Sequence[Sequence[int]]) -> list[int]:
    """Bucket-wise sum of several histograms (runs, exchanges)."""
    out = [0] * (len(LATENCY_BUCKETS) + 1)
    for histogram in histograms:
        for index, count in enumerate(histogram):
            out[index] += count
    return out
