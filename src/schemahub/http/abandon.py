"""Blocking calls a stop request can walk away from.

A thread blocked in ``recv`` cannot be interrupted from Python, and closing an httpx
client does not wake it (measured: the read ends only when the server answers). So each
request runs on a *daemon* worker thread, and the caller waits for its answer or for the
stop token, whichever comes first. An abandoned request finishes (or not) on its own;
nothing waits for it, and process exit does not join daemon threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from schemahub.stop import StopToken

T = TypeVar("T")
_POLL_S = 0.05


class DaemonPool:
    """A minimal executor whose threads never keep the process alive."""

    def __init__(self, name: str, max_workers: int) -> None:
        self._name = name
        self._max = max_workers
        self._tasks: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._idle == 0 and self._workers < self._max:
                self._workers += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._workers}", daemon=True).start()
            else:
                self._idle -= 1 if self._idle else 0
        self._tasks.put((fn, future))
        return future

    def _work(self) -> None:
        while True:
            fn, future = self._tasks.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1


def call(pool: DaemonPool, fn: Callable[[], T], stop: StopToken) -> T:
    """``fn()`` on ``pool``; ``Interrupted`` as soon as ``stop`` is set (the call is abandoned)."""
    stop.check()
    future = pool.submit(fn)
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except TimeoutError:
            stop.check()
