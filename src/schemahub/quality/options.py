"""What ``check`` is asked to check (light: the CLI and the routine build it before any engine loads)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class CheckOptions:
    freshness: timedelta = timedelta(hours=2)
    """A product with no trade for longer than this is stale."""
    future_skew: timedelta = timedelta(minutes=5)
    """Trades later than now plus this are in the future."""
    deep: bool = False
    """Re-map every raw file and compare every row; verify every certificate."""
