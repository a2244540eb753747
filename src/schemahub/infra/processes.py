"""Who is a process, and is it provably gone? Used to take over what dead writers left.

A pid alone names a process only within one PID namespace on one boot of one kernel,
and only until the pid is reused. Containers that share a hostname but not a PID
namespace (host networking) would otherwise see each other's live processes as dead.
So an owner is identified by hostname, kernel boot id, PID-namespace inode, pid and the
process's start time (clock ticks since boot), and declared dead only when all of the
first three match ours and the pid is absent, a zombie, or a different (newer) process.
Anything we cannot see - another host, another namespace, another boot - is presumed
alive until its lease expires.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

HOST = socket.gethostname()
_PROC = Path("/proc")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (None: no such process)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _state(pid: int) -> str:
    fields = _read(f"/proc/{pid}/stat").rpartition(")")[2].split()
    return fields[0] if fields else ""


BOOT_ID = _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:16] or "0"
PID_NAMESPACE = _pid_namespace()


@dataclass(frozen=True)
class Identity:
    host: str
    boot_id: str
    pid_ns: str
    pid: int
    start_ticks: int

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.boot_id}:{self.pid_ns}:{self.start_ticks}"

    @classmethod
    def parse(cls, text: str) -> Identity | None:
        """The identity at the start of an owner id or temp-file name; None if it has none."""
        parts = text.split(":")
        if len(parts) < 5 or not (parts[1].isdigit() and parts[4].isdigit()):
            return None
        return cls(parts[0], parts[2], parts[3], int(parts[1]), int(parts[4]))


_ME: dict[int, Identity] = {}


def me() -> Identity:
    """This process (cached per pid, so a forked child gets its own)."""
    pid = os.getpid()
    found = _ME.get(pid)
    if found is None:
        found = _ME[pid] = Identity(HOST, BOOT_ID, PID_NAMESPACE, pid, _start_ticks(pid) or 0)
    return found


def is_dead(who: Identity) -> bool:
    """True only when we can prove it: our host, boot and PID namespace, and the pid is
    gone, a zombie, or now a different process (started at another time)."""
    if (who.host, who.boot_id, who.pid_ns) != (HOST, BOOT_ID, PID_NAMESPACE) or who.pid == os.getpid():
        return False
    try:
        os.kill(who.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by someone else: compare start times below
    if not _PROC.is_dir():
        return False  # no /proc (not Linux): a pid that exists cannot be told apart from a new one
    started = _start_ticks(who.pid)
    if started is None:
        return True  # it ended between the two looks
    return started != who.start_ticks or _state(who.pid) == "Z"
