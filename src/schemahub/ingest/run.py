"""The state one product's ingestion carries between the engine and its strategy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemahub.infra.checkpoints import Checkpoint, Stored
from schemahub.infra.locks import Lease, LeaseKeeper
from schemahub.ingest.report import ProductReport
from schemahub.raw import files
from schemahub.sources.base import Product


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
                   micros(h.first_trade_time), micros(h.last_trade_time),
                   [(a, b) for a, b in h.missing_ids], adopted)


@dataclass
class ProductRun:
    """One product's ingestion in progress (one thread owns it)."""

    product: Product
    lease: Lease
    keeper: LeaseKeeper
    report: ProductReport
    stored: Stored[Checkpoint] | None
    start_after_id: int
    watermark: int
    watermark_us: int | None
    earliest_us: int
    """No uncommitted file of this product can hold a trade older than this."""
    cursor: str | None = None


def micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)



