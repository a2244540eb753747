"""Stream the one member of a zip archive (or a gzip file), inflated with ISA-L (python-isal).

Archive CSVs are read twice - inspected at ingest, mapped at transform - and inflating
them is the slowest step of both: Python's ``zipfile`` inflates with zlib at ~300 MB/s on
this machine, ISA-L at ~1 GB/s (docs/BENCHMARKS.md). ``zipfile`` still reads the central
directory (ZIP64 included) and says where the member's data starts and how long it is;
this module inflates those bytes a megabyte at a time and checks the CRC-32 and the size
the directory records, so a corrupt member is an error, never short data.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from isal import igzip, isal_zlib

from schemahub.errors import ArchiveError

_BLOCK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_MAGIC = b"PK\x03\x04"


class MemberReader(io.RawIOBase):
    """A zip member's inflated bytes, as a read-only file (Arrow's CSV reader reads it)."""

    def __init__(self, path: Path, info: zipfile.ZipInfo, filename: str) -> None:
        super().__init__()
        if info.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
            raise ArchiveError(f"{filename}: {info.filename} is compressed with method {info.compress_type}, "
                               "not deflate")
        self._name = filename
        self._info = info
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._file.seek(info.header_offset)
        header = self._file.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
            self._file.close()
            raise ArchiveError(f"{filename}: no local header for {info.filename}")
        name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
        self._file.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        self._left = info.compress_size
        self._inflate = isal_zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        self._pending = b""
        self._pos = 0
        self._crc = 0
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (Arrow asks for a block at a time; -1 reads to the end)."""
        wanted = float("inf") if size is None or size < 0 else size
        parts: list[bytes] = []
        got = 0
        while got < wanted:
            if self._pos >= len(self._pending) and not self._more():
                break
            take = self._pending[self._pos:self._pos + int(min(wanted - got, len(self._pending)))]
            self._pos += len(take)
            parts.append(take)
            got += len(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _more(self) -> bool:
        """Inflate the next block into ``_pending``; False at the end (checked there)."""
        if self._left <= 0:
            if self._inflate is not None:
                tail = self._inflate.flush()
                self._inflate = None
                if tail:
                    self._take(tail)
                    return True
            self._check()
            return False
        raw = self._file.read(min(_BLOCK, self._left))
        if not raw:
            raise ArchiveError(f"{self._name}: {self._info.filename} ends early (truncated zip)")
        self._left -= len(raw)
        try:
            data = raw if self._inflate is None else self._inflate.decompress(raw)
        except (isal_zlib.error, ValueError) as exc:  # type: ignore[misc]  # (stubs lack it)
            raise ArchiveError(f"{self._name}: {self._info.filename} cannot be inflated: {exc}") from None
        self._take(data)
        return True

    def _take(self, data: bytes) -> None:
        self._crc = isal_zlib.crc32(data, self._crc)
        self._size += len(data)
        self._pending, self._pos = data, 0

    def _check(self) -> None:
        if self._size != self._info.file_size or self._crc != self._info.CRC:
            info = self._info
            raise ArchiveError(f"{self._name}: {info.filename} inflates to {self._size} bytes with CRC "
                               f"{self._crc:08x}; the zip records {info.file_size} and {info.CRC:08x}")

    def close(self) -> None:
        self._file.close()
        super().close()


class GzipMember(io.RawIOBase):
    """A gzip file's content (Bybit's ``.csv.gz``), inflated by ISA-L; the gzip trailer's CRC-32
    and size are checked at the end, and any damage is an ``ArchiveError``, never short data."""

    def __init__(self, path: Path, filename: str) -> None:
        super().__init__()
        self._name = filename
        self._gzip = igzip.IGzipFile(path, "rb")  # type: ignore[no-untyped-call]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            return int(self._gzip.readinto(buffer))
        except (OSError, EOFError, isal_zlib.error) as exc:  # type: ignore[misc]  # (stubs lack it)
            raise ArchiveError(f"{self._name} is not a readable gzip file: {exc}") from None

    def close(self) -> None:
        self._gzip.close()
        super().close()
