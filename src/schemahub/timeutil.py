"""Time and run identity helpers shared by every stage (one definition each).

Trade times travel as integer microseconds since the Unix epoch (UTC): exact, cheap to
compare, and what the unified table stores.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """A timezone-aware datetime as epoch microseconds (exact)."""
    return (moment - EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    """Epoch microseconds as a UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def iso_to_us(text: str) -> int:
    """ISO-8601 time with 0-6 fractional digits to epoch microseconds (UTC unless it says)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_us(moment)


def us_to_iso(us: int) -> str:
    """Epoch microseconds as ISO-8601 UTC with a ``Z`` (what REST APIs take for a time)."""
    return from_us(us).isoformat().replace("+00:00", "Z")


def now_us() -> int:
    return to_us(datetime.now(UTC))


def new_run_id(now: datetime | None = None) -> str:
    """``20261130T174831Z-1a2b3c4d``: sorts by start time, unique per run."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta | None:
    """``90s``, ``15m``, ``2h``, ``1d`` as a timedelta; None when ``text`` is not one."""
    match = _DURATION.fullmatch(text.strip())
    return None if match is None else timedelta(**{_UNITS[match[2]]: int(match[1])})
