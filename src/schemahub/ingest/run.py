"""What one product's ingestion carries between the engine and its strategy.

A strategy (``chunked`` for dense ids, ``sequential`` for cursors) decides what to fetch;
it writes and commits only through a ``ProductSink`` - the narrow interface the engine
gives it for one product under its lease - and never touches storage, leases or reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from schemahub.infra.checkpoints import Checkpoint, Stored
from schemahub.ingest.plan import Chunk
from schemahub.ingest.report import ProductReport
from schemahub.raw import files
from schemahub.sources.base import Product, RawTrade, RequestRecord
from schemahub.stop import StopToken
from schemahub.timeutil import to_us


@dataclass(frozen=True)
class IngestOptions:
    since_us: int | None = None
    """Cold-start time for products without a checkpoint (default: 24 hours ago)."""
    workers: int = 4
    """Products ingested in parallel."""
    chunk_concurrency: int = 5
    """Chunks in flight per product (dense-id exchanges)."""
    commit_interval_s: float = 1.0
    lock_wait_s: float = 0.0
    """How long to wait for a product another process holds (0: skip it at once)."""
    job: str | None = None
    """A job name makes overlapping runs of the same job exclusive (cron, schedulers)."""


@dataclass(frozen=True)
class ChunkOutcome:
    """What one completed chunk (or page) left in the lake."""

    key: str | None
    trades: int
    first_id: int | None
    last_id: int | None
    first_us: int | None
    last_us: int | None
    missing: list[tuple[int, int]]
    adopted: bool = False
    raw_bytes: int = 0
    """Bytes this run wrote to the lake for it (0 when adopted or already there)."""

    @classmethod
    def from_header(cls, key: str, h: files.RawHeader, adopted: bool) -> ChunkOutcome:
        return cls(key, h.trade_count, h.first_trade_id, h.last_trade_id,
                   to_us(h.first_trade_time), to_us(h.last_trade_time),
                   [(a, b) for a, b in h.missing_ids], adopted)


@dataclass
class ActiveProduct:
    """One product's ingestion in progress (one thread owns it)."""

    product: Product
    report: ProductReport
    stored: Stored[Checkpoint] | None
    start_after_id: int
    watermark: int
    watermark_us: int | None
    earliest_us: int
    """No uncommitted file of this product can hold a trade older than this."""
    cursor: str | None = None
    derived_after: int | None = None
    derived_through: int | None = None
    """Rows without a trade id (cursor venues): their derived ids' covered range."""


class ProductSink(Protocol):
    """Where a strategy writes one product's raw files and moves its checkpoint."""

    state: ActiveProduct
    stop: StopToken

    def started(self, total_ids: int | None) -> None:
        """The product's work is planned (for progress: ids to cover, if known)."""

    def save_start(self) -> None:
        """Record a cold start at once, so a re-run resumes on the same plan."""

    def write(self, trades: list[RawTrade], lo: int, hi: int, missing: list[tuple[int, int]],
              requests: list[RequestRecord]) -> ChunkOutcome:
        """One immutable raw file for the trades covering ids (lo, hi] (none: no file)."""

    def note(self, outcome: ChunkOutcome, ids_covered: int) -> None:
        """Count a completed chunk or page in the report and the progress display."""

    def commit(self, outcomes: list[ChunkOutcome], watermark: int, cursor: str | None = None) -> None:
        """Move the watermark over committed outcomes: gap log first, then the checkpoint
        (with ``state``'s cursor and derived-id range as the strategy left them)."""

    def leftovers(self, head_id: int, chunk_size: int) -> dict[Chunk, ChunkOutcome]:
        """Adopt raw files a crashed run left above the watermark on this plan; delete others."""
