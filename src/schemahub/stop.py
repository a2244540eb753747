"""A stop request shared by every thread of a run (SIGINT/SIGTERM, or a caller of the API).

Long waits - the rate limiter, retry backoff, an HTTP answer, a lease we wait for - wait on
the token instead of sleeping, so a stop is noticed within a fraction of a second wherever
a thread is. Work that was committed stays committed; work in flight is abandoned.
"""

from __future__ import annotations

import threading

from schemahub.errors import Interrupted


class StopToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def stop(self, reason: str = "interrupted") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the stop came first."""
        return self._event.wait(max(0.0, seconds))

    def check(self) -> None:
        """Raise ``Interrupted`` once a stop was requested."""
        if self._event.is_set():
            raise Interrupted(f"stopped: {self.reason}")

