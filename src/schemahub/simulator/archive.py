"""A simulated bulk-archive host: files built from the same trades the REST API serves.

What is venue-neutral lives here: when a period's file is *published* (a day's file the
day after, a month's a few days into the next month), the fault knobs of ``ArchiveFaults``
(unpublished periods, truncated downloads, checksum mismatches, files that leave trades
out, rows out of order, slow downloads), and a build cache: a file is built once per
simulator (in memory, or on disk under ``cache_dir`` for the big ones the benchmark
serves) and streamed from there. A venue's module says how a period's trades are
written (``build``) and where files live (``parse_path``).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from schemahub.simulator.market import Market
from schemahub.simulator.wire import Reply
from schemahub.sources.archive import Period


@dataclass(frozen=True)
class ArchiveFaults:
    """Archive knobs, by period label (``2026-11-18`` for a day, ``2026-10`` for a month)."""

    unpublished: frozenset[str] = frozenset()
    """Periods answered 404 although due (a late upload, or no trading that day)."""
    daily_delay_s: float = 3600.0
    """A day's file appears this long after the day ends."""
    monthly_delay_s: float = 3 * 86400.0
    """A month's file appears this long after the month ends."""
    monthly: bool = True
    """Whether monthly files are published at all."""
    corrupt: Mapping[str, int] = field(default_factory=dict)
    """Period -> how many downloads of its file come with a flipped byte (-1: every one),
    so the bytes do not match the published checksum."""
    truncate: Mapping[str, int] = field(default_factory=dict)
    """Period -> how many downloads of its file stop halfway (-1: every one)."""
    leave_out_first: Mapping[str, int] = field(default_factory=dict)
    """Period -> how many of its first trades the file leaves out (REST still has them): an id
    jump between two files."""
    out_of_order: frozenset[str] = frozenset()
    """Periods whose file has its last rows first (not sorted by id)."""
    header: frozenset[str] = frozenset()
    """Periods whose file starts with a header row."""
    lowercase_bools: bool = False
    """``true``/``false`` instead of Binance spot's ``True``/``False``."""
    wrong_unit: frozenset[str] = frozenset()
    """Periods whose file carries times in the other unit than its date calls for."""
    bytes_per_s: float | None = None
    """Download speed of every file (None: as fast as loopback goes)."""


@dataclass(frozen=True)
class FileRequest:
    """What an archive path names."""

    market: Market
    kind: str
    """The venue's dataset (``trades``, ``aggTrades``)."""
    period: Period
    filename: str
    checksum: bool
    """The request is for the file's checksum, not the file."""


@dataclass(frozen=True)
class _Built:
    data: bytes | None
    path: Path | None
    sha256: str
    size: int


class ArchiveHost(ABC):
    """Serves one venue's archive layout; subclasses know the layout and the file format."""

    prefix: str
    """Paths under this prefix are archive requests."""
    utc_offset_h: int = 0
    """The venue's archive days start at midnight of UTC+h (OKX: 8)."""

    def __init__(self, markets: Mapping[str, Market], cache_dir: Path | None = None) -> None:
        self.markets = markets
        self.cache_dir = cache_dir
        self._built: dict[tuple[str, str, str, bool], _Built] = {}
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._build_locks: dict[tuple[str, str, str, bool], threading.Lock] = {}

    @abstractmethod
    def parse_path(self, path: str) -> FileRequest | None:
        """The file a path names, or None for a path outside the layout."""

    @abstractmethod
    def build(self, request: FileRequest, faults: ArchiveFaults, sink: BinaryIO) -> None:
        """Write the period's file (its exact bytes) into ``sink`` (seekable)."""

    def serve(self, path: str, now_us: int, faults: ArchiveFaults) -> Reply:
        request = self.parse_path(path)
        published = request is not None and self.published(request.period, now_us, faults)
        if request is None or not published or not self.has_trades(request):
            return Reply(404, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
                         b"<Message>The specified key does not exist.</Message></Error>",
                         (("content-type", "application/xml"),))
        built = self._file(request, faults)
        if request.checksum:
            text = f"{built.sha256}  {request.filename}"  # sha256sum's format, no newline
            return Reply(200, text.encode(), (("content-type", "text/plain"),))
        served = self._count(path)
        body_corrupt = _applies(faults.corrupt.get(request.period.label), served)
        truncated = _applies(faults.truncate.get(request.period.label), served)
        headers = (("content-type", "application/zip"),)
        return Reply(200, built.data or b"", headers, file=built.path, flip_byte=body_corrupt,
                     stop_halfway=truncated, bytes_per_s=faults.bytes_per_s)

    def published(self, period: Period, now_us: int, faults: ArchiveFaults) -> bool:
        if period.label in faults.unpublished or (period.kind == "monthly" and not faults.monthly):
            return False
        delay = faults.daily_delay_s if period.kind == "daily" else faults.monthly_delay_s
        return period.bounds_us(self.utc_offset_h)[1] + int(delay * 1_000_000) <= now_us

    def trade_range(self, market: Market, period: Period) -> tuple[int, int]:
        """Indexes [start, stop) of the trades whose time falls in ``period`` (the venue's day)."""
        lo_us, hi_us = period.bounds_us(self.utc_offset_h)
        stream = market.stream
        stream.ensure_offset(hi_us - market.anchor_us)
        offsets = stream.offsets_us
        return (bisect.bisect_left(offsets, lo_us - market.anchor_us),
                bisect.bisect_left(offsets, hi_us - market.anchor_us))

    def has_trades(self, request: FileRequest) -> bool:
        start, stop = self.trade_range(request.market, request.period)
        return stop > start

    def served(self, path: str) -> int:
        """How many times the file at ``path`` was downloaded (checksums not counted)."""
        with self._lock:
            return self._served.get(path, 0)

    def _count(self, path: str) -> int:
        with self._lock:
            self._served[path] = self._served.get(path, 0) + 1
            return self._served[path]

    def _file(self, request: FileRequest, faults: ArchiveFaults) -> _Built:
        label = request.period.label
        variant = (label in faults.out_of_order, label in faults.header, faults.lowercase_bools,
                   faults.leave_out_first.get(label, 0), label in faults.wrong_unit)
        key = (request.market.spec.native, request.kind, f"{request.period.kind}:{label}:{variant}", False)
        with self._lock:
            lock = self._build_locks.setdefault(key, threading.Lock())
        with lock:  # one build per file, however many clients ask at once
            built = self._built.get(key)
            if built is None:
                built = self._built[key] = self._build(request, faults, key)
            return built

    def _build(self, request: FileRequest, faults: ArchiveFaults, key: tuple[str, str, str, bool]) -> _Built:
        if self.cache_dir is None:
            buffer = io.BytesIO()
            self.build(request, faults, buffer)
            data = buffer.getvalue()
            return _Built(data, None, hashlib.sha256(data).hexdigest(), len(data))
        # Named after everything its bytes depend on: a cache survives simulators over the same
        # seed and products (the benchmark's 30M-trade months are built once).
        market = request.market
        identity = repr((key, market.spec, market.seed, market.anchor_us))
        name = hashlib.sha256(identity.encode()).hexdigest()[:24] + "-" + request.filename
        path = self.cache_dir / name
        digest_path = path.with_suffix(".sha256")
        if path.exists() and digest_path.exists():  # built by an earlier simulator over the same seed
            return _Built(None, path, digest_path.read_text().strip(), path.stat().st_size)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with open(partial, "w+b") as fh:
            self.build(request, faults, fh)
            fh.seek(0)
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        partial.replace(path)
        digest_path.write_text(digest)
        return _Built(None, path, digest, path.stat().st_size)


def _applies(times: int | None, served: int) -> bool:
    return times is not None and (times < 0 or served <= times)
