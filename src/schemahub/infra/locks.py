"""Lease locks: at most one writer per product, and a dead writer's lease expires by itself.

A lease has an owner, an expiry and a *fencing token* that grows by one on every
acquisition of that name. Holders renew (heartbeat) well before expiry; a holder that
cannot renew has lost the lease and must stop writing. The token is written into every
raw file and checkpoint, so the lake itself proves who wrote what under which lease.

``LocalLocks`` keeps leases as JSON files under the lake's ``state/locks/`` and
serializes read-modify-write cycles with ``flock``. On one host it also notices a dead
owner process at once (pid gone) instead of waiting for the lease to expire.
``DynamoLocks`` (infra/dynamo_locks.py) implements the same ``LockBackend`` protocol with
DynamoDB conditional writes, for lakes shared by many hosts.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from schemahub.errors import CorruptState, LockHeld, LockLost
from schemahub.identifiers import lock_name_part
from schemahub.infra import processes
from schemahub.infra.storage import storage_error

log = logging.getLogger("schemahub.locks")


class LeaseRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    owner: str
    token: int
    acquired_at: float
    expires_at: float
    released: bool = False


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    token: int
    expires_at: float


class LockBackend(Protocol):
    def acquire(self, name: str, owner: str, ttl: float) -> Lease:
        """Take the lease or raise ``LockHeld``."""
        ...

    def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend our lease or raise ``LockLost``."""
        ...

    def release(self, lease: Lease, forget: bool = False) -> None:
        """Give the lease up (no error if it was already lost).

        ``forget`` drops the record entirely, for names never used again (a run's own id);
        otherwise it stays, marked released, so the next holder's token keeps growing.
        """
        ...

    def list(self) -> list[LeaseRecord]: ...


def new_owner_id() -> str:
    """``host:pid:boot:pidns:start:random`` - unique per holder; names the process exactly
    (infra/processes.py), and tells an operator where it runs."""
    return f"{processes.me()}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(owner: str) -> bool:
    """True only when we can *prove* the owner process is gone (see infra/processes.py)."""
    identity = processes.Identity.parse(owner)
    return identity is not None and processes.is_dead(identity)


def check_free(current: LeaseRecord | None, name: str, owner: str, now: float) -> None:
    """Raise ``LockHeld`` unless ``owner`` may take the lease whose record is ``current``:
    free, released, ours already, expired, or held by a process proven dead."""
    if current is not None and not current.released and current.owner != owner \
            and current.expires_at > now and not _owner_is_dead(current.owner):
        raise LockHeld(f"{name} is held by {current.owner} until "
                       f"{time.strftime('%H:%M:%S', time.gmtime(current.expires_at))} UTC",
                       name=name, owner=current.owner)


class LocalLocks:
    """Leases as files in a local directory (the lake's ``state/locks``)."""

    def __init__(self, root: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self._clock = clock

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        for part in parts:
            lock_name_part(part)
        return self.root.joinpath(*parts[:-1], parts[-1] + ".json")

    @contextlib.contextmanager
    def _guard(self, path: Path) -> Iterator[LeaseRecord | None]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path.parent, os.O_RDONLY)
        except OSError as exc:
            raise storage_error(exc, path.parent, "cannot use the lease folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read(path)
        finally:
            os.close(fd)

    def _read(self, path: Path) -> LeaseRecord | None:
        try:
            return LeaseRecord.model_validate(orjson.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise CorruptState(f"lease file {path} is corrupt ({exc}); delete it if no run is active",
                               path=str(path)) from exc

    def _write(self, path: Path, record: LeaseRecord) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(orjson.dumps(record.model_dump()))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise storage_error(exc, path, "cannot write the lease") from None

    def acquire(self, name: str, owner: str, ttl: float) -> Lease:
        path = self._path(name)
        with self._guard(path) as current:
            now = self._clock()
            check_free(current, name, owner, now)
            token = (current.token if current else 0) + 1
            record = LeaseRecord(name=name, owner=owner, token=token, acquired_at=now,
                                 expires_at=now + ttl)
            self._write(path, record)
            return Lease(name, owner, token, record.expires_at)

    def renew(self, lease: Lease, ttl: float) -> Lease:
        path = self._path(lease.name)
        with self._guard(path) as current:
            now = self._clock()
            if current is None or current.released or current.owner != lease.owner \
                    or current.token != lease.token or current.expires_at <= now:
                raise LockLost(f"lease {lease.name} (token {lease.token}) was lost")
            record = current.model_copy(update={"expires_at": now + ttl})
            self._write(path, record)
            return Lease(lease.name, lease.owner, lease.token, record.expires_at)

    def release(self, lease: Lease, forget: bool = False) -> None:
        path = self._path(lease.name)
        with self._guard(path) as current:
            if current is None or current.owner != lease.owner or current.token != lease.token:
                return
            if forget:
                path.unlink()
                return
            self._write(path, current.model_copy(update={"released": True, "expires_at": self._clock()}))

    def list(self) -> list[LeaseRecord]:
        records = []
        for path in sorted(self.root.rglob("*.json")):
            record = self._read(path)
            if record is not None:
                records.append(record)
        return records


class LeaseKeeper:
    """Holds a set of leases for one process and renews them from a heartbeat thread.

    ``check(lease)`` is called before every write made under a lease: it raises
    ``LockLost`` if the heartbeat could not renew it, or if it is about to expire.
    """

    def __init__(self, backend: LockBackend, owner: str, ttl: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.owner = owner
        self.ttl = ttl
        self._clock = clock
        self._held: dict[str, Lease] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseKeeper:
        self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for lease in list(self._held.values()):
            self.release(lease)

    def acquire(self, name: str) -> Lease:
        lease = self.backend.acquire(name, self.owner, self.ttl)
        with self._lock:
            self._held[name] = lease
            self._lost.discard(name)
        return lease

    def release(self, lease: Lease, forget: bool = False) -> None:
        with self._lock:
            self._held.pop(lease.name, None)
        self.backend.release(lease, forget=forget)

    def check(self, lease: Lease) -> None:
        with self._lock:
            current = self._held.get(lease.name)
            lost = lease.name in self._lost
        if lost or current is None or current.token != lease.token:
            raise LockLost(f"lease {lease.name} was lost; stopping writes under it")
        if current.expires_at - self._clock() < self.ttl / 6:
            raise LockLost(f"lease {lease.name} is about to expire (heartbeat is late); stopping writes")

    def _still_held(self, lease: Lease) -> bool:
        current = self._held.get(lease.name)
        return current is not None and current.token == lease.token

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                leases = [lease for name, lease in self._held.items() if name not in self._lost]
            for lease in leases:
                try:
                    renewed = self.backend.renew(lease, self.ttl)
                except LockLost:
                    with self._lock:
                        if not self._still_held(lease):
                            continue  # released while we renewed a stale copy: not a loss
                        self._lost.add(lease.name)  # reported once; never renewed again
                    log.error("lost lease %s", lease.name)
                    continue
                except Exception as exc:
                    log.warning("could not renew lease %s (%s); will retry", lease.name, exc)
                    continue
                with self._lock:
                    if self._still_held(lease):
                        self._held[lease.name] = renewed
