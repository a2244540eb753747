"""What one product's ingestion carries between the engine and its strategy.

A strategy (``chunked`` for dense ids, ``sequential`` for cursors) decides what to fetch;
it writes and commits only through a ``ProductSink`` - the narrow interface the engine
gives it for one product under its lease - and never touches storage, leases or reports.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from schemahub.infra.checkpoints import Backfill, Checkpoint, Stored
from schemahub.ingest.plan import Chunk
from schemahub.ingest.report import ProductReport
from schemahub.raw import files
from schemahub.sources.archive import Fetched
from schemahub.sources.base import Product, RawTrade, RequestRecord
from schemahub.stop import StopToken
from schemahub.timeutil import to_us

SourceMode = Literal["auto", "rest", "archive"]


@dataclass(frozen=True)
class IngestOptions:
    since_us: int | None = None
    """Where history starts (``--since``): the cold start of a product without a checkpoint
    (default: 24 hours ago), and for one with a checkpoint, how far back to extend it."""
    workers: int = 4
    """Products ingested in parallel."""
    chunk_concurrency: int = 5
    """Chunks in flight per product (dense-id exchanges)."""
    commit_interval_s: float = 1.0
    lock_wait_s: float = 0.0
    """How long to wait for a product another process holds (0: skip it at once)."""
    job: str | None = None
    """A job name makes overlapping runs of the same job exclusive (cron, schedulers)."""
    file_trades: int = 0
    """Coalesce completed contiguous chunks into raw files of about this many trades (0: one
    file per chunk). Object-store lakes default to larger files: fewer PUTs and later GETs."""
    file_age_s: float = 30.0
    """...but write what waits at least this often, so a slow product still commits."""
    source: SourceMode = "auto"
    """Where trades come from on venues with a bulk archive: ``auto`` (archives for whole
    published days, REST for the rest), ``archive`` (archives, REST only for their seams),
    ``rest``."""


@dataclass(frozen=True)
class PendingWrite:
    trades: list[RawTrade]
    requests: list[RequestRecord]


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
    pending: PendingWrite | None = None
    """Fetched but not written yet: it waits to be written with its neighbours (coalescing)."""

    @classmethod
    def from_header(cls, key: str, h: files.RawHeader, adopted: bool, raw_bytes: int = 0) -> ChunkOutcome:
        return cls(key, h.trade_count, h.first_trade_id, h.last_trade_id,
                   to_us(h.first_trade_time), to_us(h.last_trade_time),
                   [(a, b) for a, b in h.missing_ids], adopted, raw_bytes)


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
    first_us: int | None = None
    """The first covered trade's time (the low end)."""
    covered_since_us: int | None = None
    """The earliest ``--since`` satisfied (see ``Checkpoint.covered_since``)."""
    first_pending: bool = False
    """A cold start: the first committed trade's time becomes ``first_us``."""
    backfill: Backfill | None = None


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

    def extend_down(self, outcomes: list[ChunkOutcome], low: int, first_us: int | None) -> None:
        """Move the low end down over committed outcomes (gap log first), with ``state.backfill``;
        ``first_us``: the new first covered trade's time (None: unchanged)."""

    def first_covered_us(self) -> int | None:
        """The first covered trade's time (from the raw files, for checkpoints without it)."""

    def save(self) -> None:
        """Record the checkpoint as ``state`` holds it (a backfill plan before writing for it,
        so a re-run resumes the same plan)."""

    # -- bulk archives --

    def spool(self) -> AbstractContextManager[Path]:
        """A local path for one download (removed on exit)."""

    def downloaded(self, size: int) -> None:
        """Bytes of an archive download arrived (progress)."""

    def store_archive(self, fetched: Fetched) -> str:
        """Keep a verified archive file verbatim (create-only); its key."""

    def writer(self) -> files.WriterMeta:
        """Who writes: run, lease owner, fencing token (for raw headers)."""

    def write_coverage(self, header: files.RawHeader) -> ChunkOutcome:
        """Record what a stored archive file covers (create-only)."""

    def leftovers(self, head_id: int, chunk_size: int) -> dict[Chunk, ChunkOutcome]:
        """Adopt raw files a crashed run left above the watermark on this plan; delete others."""

    def leftovers_below(self, target: int, chunk_size: int) -> dict[Chunk, ChunkOutcome]:
        """The same below the low end, for a backward extension down to ``target``."""
