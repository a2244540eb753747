"""The raw file format: gzip JSONL, one metadata header line, then the trades verbatim.

::

    {"_schemahub": {"format": "schemahub.raw/v1", "exchange": ..., "coverage": ..., ...}}
    {"trade_id": 1001, "side": "buy", "size": "0.01", "price": "64000.12", "time": "..."}
    ...

* Trade lines are the exchange's JSON objects with their values untouched (strings stay
  strings, a string ``trade_id`` stays a string), sorted by trade id.
* The header says which id range the file *covers* (every id in it that the exchange
  has is in the file), when and how it was fetched (``fetched_at`` is the source of
  ``ingest_ts``), and who wrote it (run, lease owner, fencing token).
* gzip with ``mtime=0``: the bytes depend only on the content.

A bulk-archive coverage record (``*.archive.json``) is the header line alone, with an
``archive`` section naming the verbatim zip it covers, its published digest and what the
inspection of its CSV found; its trades stay in the zip.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from schemahub.errors import CorruptState
from schemahub.raw.layout import ARCHIVE_SUFFIX
from schemahub.sources.base import RawTrade, RequestRecord

FORMAT = "schemahub.raw/v1"
HEADER_KEY = "_schemahub"
COMPRESSION_LEVEL = 6


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WriterMeta(_Model):
    run_id: str
    owner: str
    lease_token: int


class ArchiveRef(_Model):
    """The bulk-archive file a coverage record stands for."""

    key: str
    """Where the verbatim zip is in the lake."""
    url: str
    filename: str
    sha256: str
    """The venue's published checksum, which the stored bytes match."""
    size: int
    dataset: str
    """The venue's dataset (``trades``, ``aggTrades``)."""
    mapping: str
    """The transform mapping of its CSV (``<exchange>.<mapping>.yaml``)."""
    period: str
    """The day (``2024-01-15``) or month (``2024-01``) it holds."""
    header_row: bool
    rows: int
    file_first_id: int
    file_last_id: int
    in_order: bool
    duplicates: int = 0
    id_base: int = 0
    """Added to the file's ids to make the trade ids (Bybit numbers its rows from 1 in every
    file: its trade ids are ``YYYYMMDD`` x 10^9 + the row's number)."""
    named_columns: bool = False
    """Columns are found by the file's header names (Bybit added one over the years), not by position."""


class RawHeader(_Model):
    format: str = FORMAT
    exchange: str
    symbol: str
    native_id: str
    endpoint: str = "trades"
    """Which API the trades came from; selects the mapping (``<exchange>.<endpoint>.yaml``)."""
    time_unit: str | None = None
    """Unit of integer timestamps in the trade lines when the exchange lets us choose (Binance)."""
    covers_after_id: int
    """Coverage is (covers_after_id, covers_through_id]: every id in it the exchange has."""
    covers_through_id: int
    first_trade_id: int
    last_trade_id: int
    trade_count: int
    first_trade_time: datetime
    last_trade_time: datetime
    missing_ids: list[tuple[int, int]]
    """Inclusive id ranges inside the coverage that the exchange skipped."""
    fetched_at: datetime
    requests: list[RequestRecord]
    writer: WriterMeta
    archive: ArchiveRef | None = None
    """Set on bulk-archive coverage records: the trades are the zip's rows with ids in the
    coverage (the rest of the zip is covered by other records)."""

    @property
    def mapping(self) -> str:
        """Which mapping reads it: the archive's own, or the REST endpoint's."""
        return self.archive.mapping if self.archive is not None else self.endpoint


def encode_archive_header(header: RawHeader) -> bytes:
    """A coverage record: the header line alone (JSON, so Athena's raw table reads it too)."""
    return orjson.dumps({HEADER_KEY: header.model_dump(mode="json")}) + b"\n"


def encode(header: RawHeader, trades: list[RawTrade]) -> bytes:
    head = orjson.dumps({HEADER_KEY: header.model_dump(mode="json")})
    body = b"\n".join([head, *json_lines([t.record for t in trades])]) + b"\n"
    return gzip.compress(body, compresslevel=COMPRESSION_LEVEL, mtime=0)


def json_lines(records: list[Any]) -> list[bytes]:
    """One compact JSON text per record, exactly as ``orjson.dumps(record)`` would write it.

    Serializing the whole list in one call is ~30x faster than a call per record (this is
    the ingest hot path). orjson writes ``},{`` between the objects of a list and never
    whitespace, so splitting there is exact - unless a string or nested value contains
    ``},{`` too; then the parts outnumber the records and we fall back to one call each.
    """
    if not records:
        return []
    if all(type(r) is dict for r in records):
        parts = orjson.dumps(records)[2:-2].split(b"},{")
        if len(parts) == len(records):
            return [b"{" + part + b"}" for part in parts]
    return [orjson.dumps(r) for r in records]


def decode(data: bytes, where: str) -> tuple[RawHeader, Iterator[dict[str, Any]]]:
    """The header and the trade records of a raw file; ``CorruptState`` names ``where``."""
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptState(f"raw file {where} is not valid gzip: {exc}", path=where) from exc
    first, _, rest = text.partition(b"\n")
    header = parse_header(first, where)

    def records() -> Iterator[dict[str, Any]]:
        for number, line in enumerate(rest.splitlines(), start=2):
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CorruptState(f"raw file {where} line {number}: {exc}", path=where) from exc

    return header, records()


def read_header(data: bytes, where: str) -> RawHeader:
    """Only the header; decompresses just enough of the file to reach the first newline."""
    if where.endswith(ARCHIVE_SUFFIX):
        return parse_header(data.strip(), where)
    decompressor = zlib.decompressobj(wbits=31)
    head = b""
    try:  # small steps: the header is the first ~700 bytes; the trades behind it stay compressed
        for start in range(0, len(data), 512):
            head += decompressor.decompress(data[start:start + 512])
            if b"\n" in head:
                break
    except zlib.error as exc:
        raise CorruptState(f"raw file {where} is not valid gzip: {exc}", path=where) from exc
    return parse_header(head.partition(b"\n")[0], where)


def parse_header(line: bytes, where: str) -> RawHeader:
    try:
        obj = orjson.loads(line)
        return RawHeader.model_validate(obj[HEADER_KEY])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        raise CorruptState(f"raw file {where} has no valid header line: {exc}", path=where) from exc
