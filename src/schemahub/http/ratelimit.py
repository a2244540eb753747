"""Client-side token bucket shared by every thread that talks to one exchange.

It is a *reservation* bucket: ``reserve()`` takes tokens immediately (the balance may go
negative) and returns how long the caller must wait before using them. Waiting happens
outside the lock, so N threads queue in FIFO order at exactly ``rate`` tokens/s instead
of waking up together and racing for the next token. A request may cost several tokens:
Binance budgets *request weight* per minute, not requests.

``pause()`` drains the bucket and refuses new tokens until a deadline: when the exchange
answers 429, every thread of that exchange backs off, not just the one that was told.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from schemahub.stop import StopToken


@dataclass(frozen=True)
class RateLimit:
    """A documented budget: ``rate`` tokens/s sustained, bursts up to ``burst`` tokens.

    A token is one request, or one unit of request weight where the exchange weighs them.
    """

    rate: float
    burst: int


class TokenBucket:
    """Thread-safe reservation token bucket. ``rate=None`` means unlimited."""

    def __init__(self, rate: float | None, capacity: int,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for no limit)")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(capacity)
        self._updated = clock()
        self._pauses = 0

    def reserve(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return the seconds to wait before they may be used."""
        with self._lock:
            now = self._clock()
            if self.rate is None:
                return max(0.0, self._updated - now)
            self._refill(now)
            self._tokens -= cost
            ready_at = max(self._updated, now) + max(0.0, -self._tokens) / self.rate
            return ready_at - now

    def try_take(self, cost: float = 1.0) -> bool:
        """Take tokens only if they are available now (the server side of a rate limit)."""
        with self._lock:
            now = self._clock()
            if self.rate is None:
                return True
            self._refill(now)
            if self._tokens >= cost and now >= self._updated:
                self._tokens -= cost
                return True
            return False

    def acquire(self, cost: float = 1.0, stop: StopToken | None = None) -> float:
        """Block until the tokens are ours; return the seconds spent waiting.

        A pause that starts while we wait (another thread was told 429) cancels our
        reservation: we queue again behind it instead of firing into the rate limit. With a
        ``stop`` token the wait ends (``Interrupted``) as soon as it is set.
        """
        waited = 0.0
        while True:
            with self._lock:
                pauses = self._pauses
            wait = self.reserve(cost)
            if wait > 0:
                if stop is None:
                    self._sleep(wait)
                else:
                    stop.wait(wait)
                    stop.check()
                waited += wait
            with self._lock:
                if self._pauses == pauses:
                    return waited

    def pause(self, seconds: float) -> None:
        """Hand out no token for ``seconds`` and start refilling from empty afterwards."""
        with self._lock:
            now = self._clock()
            until = now + seconds
            if self.rate is not None:
                self._refill(now)
                self._tokens = min(self._tokens, 0.0)
            self._updated = max(self._updated, until)
            self._pauses += 1

    def reconfigure(self, rate: float, capacity: int) -> None:
        """Adopt a budget learned at run time (e.g. Binance's exchangeInfo.rateLimits)."""
        with self._lock:
            self.rate, self.capacity = rate, capacity
            self._tokens = min(self._tokens, float(capacity))

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        if now > self._updated:
            self._tokens = min(float(self.capacity), self._tokens + (now - self._updated) * self.rate)
            self._updated = now
