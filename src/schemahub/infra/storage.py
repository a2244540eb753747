"""Object storage for the lake: one small interface, chosen by the lake URL.

Keys are ``/``-separated relative names (``raw/exchange=coinbase/...``). Every write is
atomic: a reader sees the old object, the new object, or nothing, never a partial one.
Three write flavours cover what the pipeline needs:

* ``write``      - replace unconditionally (reports, seed files);
* ``create``     - create-only; returns False if the key exists (immutable raw files);
* ``replace_if`` - compare-and-swap on the version token (checkpoints, gap logs), the
  local twin of S3's ``If-Match`` / ``If-None-Match`` conditional puts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from schemahub.errors import CommitConflict, ConfigError, StorageError
from schemahub.infra import processes

if TYPE_CHECKING:
    import duckdb

_KEY_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=:+-]*")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class Versioned:
    data: bytes
    version: str


class Storage(Protocol):
    """What the pipeline needs from a lake backend."""

    read_concurrency: int
    """How many small reads are worth running at once (1 locally; more over a network)."""

    def url_for(self, key: str) -> str:
        """A human-readable location for messages (never carries credentials)."""
        ...

    def read(self, key: str) -> bytes | None: ...

    def read_versioned(self, key: str) -> Versioned | None: ...

    def write(self, key: str, data: bytes) -> None: ...

    def create(self, key: str, data: bytes) -> bool: ...

    def replace_if(self, key: str, data: bytes, expected_version: str | None) -> str: ...

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def table_options(self) -> dict[str, str]:
        """delta-rs ``storage_options`` to open the table under this lake."""
        ...

    def configure_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB read ``url_for`` locations directly (S3: httpfs and a secret)."""
        ...


def check_key(key: str) -> str:
    """Reject keys that could escape the lake root or smuggle odd characters into a path."""
    parts = key.split("/")
    if not key or any(not _KEY_SEGMENT.fullmatch(p) for p in parts):
        raise StorageError(f"invalid storage key {key!r}")
    return key


def _file_version(st: os.stat_result) -> str:
    # Every write replaces the file with a new one (new inode, new mtime), so unlike a
    # content hash this also tells apart two writes of identical bytes.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class LocalStorage:
    """A lake in a local directory. Atomic by temp file + fsync + rename."""

    read_concurrency = 1  # measured: threads only add GIL contention to ~50 µs reads

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def url_for(self, key: str) -> str:
        return str(self.path(key))

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.url_for(key)}: {exc.strerror}") from exc

    def read_versioned(self, key: str) -> Versioned | None:
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                return Versioned(fh.read(), _file_version(os.fstat(fh.fileno())))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    def write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        tmp = self._write_temp(target, data)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
        _fsync_dir(target.parent)

    def create(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        tmp = self._write_temp(target, data)
        try:
            # link() fails if the target exists, so the first complete writer wins.
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return True

    def replace_if(self, key: str, data: bytes, expected_version: str | None) -> str:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _dir_lock(target.parent):
            current = self.read_versioned(key)
            current_version = None if current is None else current.version
            if current_version != expected_version:
                raise CommitConflict(
                    f"{target} changed under us (expected version {expected_version}, "
                    f"found {current_version}): another writer got there first"
                )
            self.write(key, data)
            return _file_version(target.stat())

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        base, _, name_prefix = prefix.rpartition("/")
        start_dir = self.root / check_key(base) if base else self.root
        yield from self._walk(start_dir, base, name_prefix, start_after)

    def delete(self, key: str) -> None:
        target = self.path(key)
        try:
            target.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {target}: {exc.strerror}") from exc

    def table_options(self) -> dict[str, str]:
        return {}

    def configure_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        return None

    def _walk(self, directory: Path, dir_key: str, name_prefix: str,
              start_after: str | None) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot list {directory}: {exc.strerror}") from exc
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.startswith(name_prefix):
                continue
            key = f"{dir_key}/{entry.name}" if dir_key else entry.name
            if entry.is_dir(follow_symlinks=False):
                subtree = key + "/"
                if start_after is not None and subtree < start_after \
                        and not start_after.startswith(subtree):
                    continue  # every key below sorts before start_after
                yield from self._walk(Path(entry.path), key, "", start_after)
            elif start_after is None or key > start_after:
                yield ObjectInfo(key, entry.stat(follow_symlinks=False).st_size)

    def remove_orphaned_temp_files(self) -> int:
        """Delete temp files that writers killed mid-write left behind (their process is gone)."""
        removed = 0
        for path in self._temp_dir.glob("*.tmp"):
            host, _, rest = path.name.rpartition("~")[0].partition("~")
            if rest.isdigit() and processes.is_dead(host, int(rest)):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    @property
    def _temp_dir(self) -> Path:
        return self.root / ".tmp"

    def _write_temp(self, target: Path, data: bytes) -> Path:
        # Temp files live in one folder of the lake (same filesystem, so rename and link stay
        # atomic), named after their writer so a dead writer's leftovers can be cleared.
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._temp_dir.mkdir(exist_ok=True)
            tmp = self._temp_dir / f"{processes.HOST}~{os.getpid()}~{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
        return tmp


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """Serialize read-compare-write cycles on one directory across processes."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def open_storage(lake: str, env: Mapping[str, str] | None = None) -> Storage:
    """Pick the backend from the lake location: a path, ``file://`` URL or ``s3://`` URL."""
    if lake.startswith("file://"):
        return LocalStorage(lake[len("file://"):])
    if lake.startswith("s3://"):
        from schemahub.infra.aws import Aws
        from schemahub.infra.s3 import S3Storage

        return S3Storage(lake, Aws.from_env(env if env is not None else os.environ))
    if "://" in lake:
        scheme = lake.split("://", 1)[0]
        raise ConfigError(f"SCHEMAHUB_LAKE={lake!r}: scheme {scheme!r} is not supported (use a path, "
                          "file:// or s3://)")
    return LocalStorage(lake)
