"""Is a process (named by host and pid) provably gone? Used to clear what dead writers left."""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST = socket.gethostname()


def is_dead(host: str, pid: int) -> bool:
    """True only when we can prove it: same host, and no such pid (or a zombie)."""
    if host != HOST or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"
