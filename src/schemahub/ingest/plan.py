"""Chunk planning and watermark contiguity. Pure: no I/O, no clock.

Forward ingestion from a watermark W relies on dense per-product trade ids: chunk k
covers ids (W + size*k, W + size*(k+1)] and the last chunk ends at the head observed
when the run started. Chunks are fetched concurrently and complete in any order; the
watermark advances only over the contiguous prefix of completed chunks.

Backward extension from a product's low end L down to a target T is the mirror image:
chunk k covers (L - size*(k+1), L - size*k] (the last one starts at T), and the low end
moves down only over the contiguous run of completed chunks below it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True, order=True)
class Chunk:
    """The id range (lo, hi]."""

    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


def plan_chunks(watermark: int, head: int, size: int) -> Iterator[Chunk]:
    """Chunks covering (watermark, head], lazily (a backfill may have millions)."""
    if size < 1:
        raise ValueError("chunk size must be positive")
    lo = watermark
    while lo < head:
        hi = min(lo + size, head)
        yield Chunk(lo, hi)
        lo = hi


def plan_chunks_down(low: int, target: int, size: int) -> Iterator[Chunk]:
    """Chunks covering (target, low], newest first, on the grid of ``low``."""
    if size < 1:
        raise ValueError("chunk size must be positive")
    hi = low
    while hi > target:
        lo = max(hi - size, target)
        yield Chunk(lo, hi)
        hi = lo


def count_chunks(watermark: int, head: int, size: int) -> int:
    return max(0, -(-(head - watermark) // size))


class Contiguity(Generic[P]):
    """Completed chunks in, contiguous prefix out.

    ``complete`` accepts chunks in any order (with a payload, e.g. what was written);
    ``advance`` pops the chunks that now extend the watermark without a hole, in order.
    """

    def __init__(self, watermark: int) -> None:
        self.watermark = watermark
        self._done: dict[int, tuple[Chunk, P]] = {}

    def complete(self, chunk: Chunk, payload: P) -> None:
        if chunk.lo < self.watermark or chunk.lo in self._done:
            raise ValueError(f"chunk {chunk} completed twice or below the watermark {self.watermark}")
        self._done[chunk.lo] = (chunk, payload)

    def advance(self) -> list[tuple[Chunk, P]]:
        ready = []
        while self.watermark in self._done:
            chunk, payload = self._done.pop(self.watermark)
            ready.append((chunk, payload))
            self.watermark = chunk.hi
        return ready

    @property
    def pending(self) -> int:
        """Completed chunks waiting for an earlier one."""
        return len(self._done)


class DownwardContiguity(Generic[P]):
    """The mirror of ``Contiguity``: the low end moves down over completed chunks below it."""

    def __init__(self, low: int) -> None:
        self.watermark = low
        self._done: dict[int, tuple[Chunk, P]] = {}

    def complete(self, chunk: Chunk, payload: P) -> None:
        if chunk.hi > self.watermark or chunk.hi in self._done:
            raise ValueError(f"chunk {chunk} completed twice or above the low end {self.watermark}")
        self._done[chunk.hi] = (chunk, payload)

    def advance(self) -> list[tuple[Chunk, P]]:
        ready = []
        while self.watermark in self._done:
            chunk, payload = self._done.pop(self.watermark)
            ready.append((chunk, payload))
            self.watermark = chunk.lo
        return ready


def default_concurrency(rate: float | None, latency_s: float, products: int) -> tuple[int, int]:
    """(workers, chunk_concurrency) sized by Little's law.

    To keep ``rate`` requests/s flowing when each takes ``latency_s``, L = rate x latency
    requests must be in flight; we allow twice that so latency spikes and slow pages do
    not starve the limiter. One product alone can then saturate the limit, and up to four
    products share it. Without a limit the client's CPU is the bound: 8 per product.
    """
    in_flight = max(2, math.ceil(2 * rate * latency_s)) if rate else 8
    return max(1, min(products, 4)), in_flight
