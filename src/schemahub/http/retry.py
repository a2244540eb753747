"""The one retry policy: transient errors only, exponential backoff with full jitter,
``Retry-After`` honoured, bounded by attempts and by elapsed time.

Built on tenacity; this module only decides *what* is retried and *how long* to wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from schemahub.errors import CircuitOpen, RateLimited, is_transient

T = TypeVar("T")


def should_retry(exc: BaseException) -> bool:
    """Transient errors, and an open (not dead) circuit whose probe we can wait for."""
    if isinstance(exc, CircuitOpen):
        return not exc.dead
    return is_transient(exc)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    """Attempts per request, the first one included."""
    base: float = 0.5
    """Backoff ceiling of the first retry in seconds; it doubles per attempt."""
    cap: float = 30.0
    """Largest backoff ceiling in seconds."""
    max_elapsed: float = 300.0
    """Give up on a request after this many seconds of retrying."""
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if isinstance(exc, CircuitOpen):
            return exc.retry_in
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        delay = self.rng.uniform(0, ceiling)  # "full jitter": spreads retries of many threads
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            delay = exc.retry_after + self.rng.uniform(0, self.base)
        return delay

    def call(self, fn: Callable[[], T], *,
             on_retry: Callable[[BaseException, float], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> T:
        """Run ``fn`` until it succeeds, fails for good, or the budget is spent.

        The last error is re-raised unchanged; ``on_retry(error, delay)`` is called before
        each pause (for metrics and logs). Waiting for an open circuit's probe does not
        use up attempts: the breaker itself decides when the exchange is dead.
        """
        failures = 0

        def attempt() -> T:
            nonlocal failures
            try:
                return fn()
            except CircuitOpen:
                raise
            except Exception:
                failures += 1
                raise

        def stop(state: RetryCallState) -> bool:
            elapsed = state.seconds_since_start or 0.0
            return failures >= self.max_attempts or elapsed >= self.max_elapsed

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.backoff(max(1, failures), exc)

        def before_sleep(state: RetryCallState) -> None:
            if on_retry and state.outcome is not None:
                exc = state.outcome.exception()
                assert exc is not None
                on_retry(exc, state.upcoming_sleep)

        retrying = Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(should_retry),
            reraise=True,
            sleep=sleep,
            before_sleep=before_sleep,
        )
        return retrying(attempt)
