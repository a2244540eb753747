"""The one retry policy: transient errors only, exponential backoff with full jitter,
``Retry-After`` honoured, bounded by attempts and by elapsed time. A request that
still fails when the budget is spent says so: "gave up after 8 attempts over 41.2s".

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
from schemahub.stop import StopToken

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
             sleep: Callable[[float], None] | None = None, stop: StopToken | None = None) -> T:
        """Run ``fn`` until it succeeds, fails for good, or the budget is spent.

        The last error is re-raised; when it was worth retrying but the budget ran out, its
        message says how many attempts over how long. ``on_retry(error, delay)`` is called
        before each pause (for metrics and logs). Waiting for an open circuit's probe does
        not use up attempts: the breaker itself decides when the exchange is dead. Pauses
        end early when ``stop`` is set, and no attempt starts after it.
        """
        failures = 0
        started = time.monotonic()

        def pause(seconds: float) -> None:
            if stop is not None:
                stop.wait(seconds)
            else:
                time.sleep(seconds)

        def attempt() -> T:
            nonlocal failures
            if stop is not None:
                stop.check()
            try:
                return fn()
            except CircuitOpen:
                raise
            except Exception:
                failures += 1
                raise

        def give_up(state: RetryCallState) -> bool:
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
            stop=give_up,
            wait=wait,
            retry=retry_if_exception(should_retry),
            reraise=True,
            sleep=sleep or pause,
            before_sleep=before_sleep,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            if should_retry(exc) and failures > 1:
                exc.args = (f"{exc} (gave up after {failures} attempts over "
                            f"{time.monotonic() - started:.1f}s)", *exc.args[1:])
            raise
