"""The HTTP counters: defined once, here, at the bottom of the import graph.

``HttpCounts`` is the one definition of what we count about an exchange's requests. The
HTTP client accumulates into ``RequestStats`` (thread-safe), a run record stores its
``HttpCounts`` snapshot per exchange, and the SQL views over run records take their
column types from the same fields (``metrics/views.py``).
"""

from __future__ import annotations

import bisect
import threading

from pydantic import BaseModel, ConfigDict, Field

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request latency histogram (Prometheus' default buckets)."""


class HttpCounts(BaseModel):
    """Counters of one exchange (or of one product's share of it) over a run."""

    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    banned: int = 0
    bytes: int = 0
    """Bytes received from the exchange."""
    limiter_wait_s: float = 0.0
    latency_s: float = 0.0
    statuses: dict[str, int] = Field(default_factory=dict)
    """Answers by HTTP status ("200", "429", ...), and "timeout" / "unreachable" for none."""
    latency_buckets: list[int] = Field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    """Answered requests per latency bucket (upper bounds LATENCY_BUCKETS, then +Inf)."""


class RequestStats:
    """A thread-safe accumulator of ``HttpCounts``."""

    def __init__(self) -> None:
        self._counts = HttpCounts()
        self._lock = threading.Lock()

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._counts, name, getattr(self._counts, name) + delta)

    def observe(self, status: str, seconds: float | None) -> None:
        """One request's outcome (and latency, when it was answered)."""
        with self._lock:
            statuses = self._counts.statuses
            statuses[status] = statuses.get(status, 0) + 1
            if seconds is not None:
                self._counts.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def snapshot(self) -> HttpCounts:
        with self._lock:
            return self._counts.model_copy(deep=True)
