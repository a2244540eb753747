"""Circuit breaker per exchange: closed -> open -> half-open -> closed (or dead).

* **closed**: calls pass. ``failure_threshold`` consecutive failures open the circuit.
* **open**: calls fail at once with ``CircuitOpen`` (no network) until the cool-down ends.
* **half-open**: exactly one caller is let through as a probe. Success closes the
  circuit; failure opens it again with a doubled cool-down.
* **dead**: after ``max_failed_probes`` failed probes in a row the exchange is declared
  down and every call fails for good, so a run against a dead exchange ends within
  seconds with a clear message instead of hammering it.

Only failures that say something about the exchange's health count: 5xx, timeouts,
connection errors, garbled bodies. A 429 proves the exchange is alive (the rate
limiter deals with it) and a 4xx is our mistake.

A *ban* (Binance's 418: the IP ignored 429s) opens the circuit for good at once: every
further call fails without touching the network, because each one would extend a ban
that escalates from minutes to days.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

from schemahub.errors import CircuitOpen


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"
    DEAD = "dead"


class CircuitBreaker:
    def __init__(self, exchange: str, *, failure_threshold: int = 8, cooldown: float = 2.0,
                 max_cooldown: float = 30.0, max_failed_probes: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.exchange = exchange
        self.failure_threshold = failure_threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.max_failed_probes = max_failed_probes
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._failed_probes = 0
        self._cooldown = cooldown
        self._open_until = 0.0
        self._probe_in_flight = False
        self._last_error = ""
        self._ban: str | None = None
        self.trips = 0

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def before_call(self) -> None:
        """Raise ``CircuitOpen`` unless this call may go to the network."""
        with self._lock:
            if self._state is State.CLOSED:
                return
            if self._state is State.DEAD:
                raise self._error(dead=True, retry_in=0.0)
            now = self._clock()
            if self._state is State.OPEN and now >= self._open_until:
                self._state = State.HALF_OPEN
            if self._state is State.HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return
            raise self._error(dead=False, retry_in=max(self._open_until - now, 0.05))

    def on_success(self) -> None:
        with self._lock:
            if self._state is State.DEAD:
                return  # a late answer to a call sent before a ban (or before giving up) reopens nothing
            self._state = State.CLOSED
            self._failures = 0
            self._failed_probes = 0
            self._cooldown = self.base_cooldown
            self._probe_in_flight = False

    def on_neutral(self) -> None:
        """The call ended in a way that says nothing about health (429, 4xx)."""
        with self._lock:
            if self._state is State.HALF_OPEN:
                self._probe_in_flight = False

    def ban(self, reason: str) -> None:
        """The exchange banned us: stop calling it for the rest of this run."""
        with self._lock:
            self._state = State.DEAD
            self._ban = reason
            self.trips += 1

    def on_failure(self, reason: str) -> None:
        with self._lock:
            self._last_error = reason
            if self._state is State.HALF_OPEN:
                self._probe_in_flight = False
                self._failed_probes += 1
                if self._failed_probes >= self.max_failed_probes:
                    self._state = State.DEAD
                    return
                self._cooldown = min(self._cooldown * 2, self.max_cooldown)
                self._open(self._clock())
                return
            if self._state is not State.CLOSED:
                return  # a late answer to a call made before the circuit opened
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open(self._clock())

    def _open(self, now: float) -> None:
        self._state = State.OPEN
        self._open_until = now + self._cooldown
        self.trips += 1

    def _error(self, *, dead: bool, retry_in: float) -> CircuitOpen:
        if self._ban is not None:
            msg = f"{self.exchange} banned this IP ({self._ban}); no more requests this run"
        elif dead:
            msg = (f"{self.exchange} looks down: {self.failure_threshold} consecutive failures and "
                   f"{self.max_failed_probes} failed recovery probes (last error: {self._last_error})")
        else:
            msg = (f"circuit open for {self.exchange} after {self.failure_threshold} consecutive "
                   f"failures (last error: {self._last_error}); next probe in {retry_in:.1f}s")
        return CircuitOpen(msg, exchange=self.exchange, dead=dead, retry_in=retry_in)
