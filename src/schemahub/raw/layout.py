"""Where raw files live and what their names mean (pure: no I/O).

::

    raw/exchange=<exchange>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/
        <exchange>-<BASE-QUOTE>-<first trade id:020>-<last trade id:020>.jsonl.gz

``date`` is the UTC day of the file's first trade, so the path is a function of the
content: fetching the same range again produces the same key. Hive-style ``k=v``
folders let Athena/DuckDB prune by exchange, symbol and day. Ids are zero-padded so
lexicographic order is numeric order.

A bulk-archive file is kept verbatim, outside the ``date=`` folders (Athena's raw table
reads JSON lines only), named after the venue's own file and its sha256::

    raw/exchange=<exchange>/symbol=<BASE-QUOTE>/archives/<venue file name>.<sha256[:16]>.zip (or .csv.gz)

and what it covers is recorded beside the other raw files, as one JSON header line::

    .../date=<YYYY-MM-DD>/<exchange>-<BASE-QUOTE>-<first id:020>-<last id:020>.archive.json

(``RawKey.archive``): the ids (first, last] of the zip it names that ingest committed. A
zip may be covered by several of them (around ids the file left out that REST filled).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from schemahub.errors import InvalidIdentifier
from schemahub.identifiers import Symbol, exchange_name, symbol

RAW_ROOT = "raw"
SUFFIX = ".jsonl.gz"
ARCHIVE_SUFFIX = ".archive.json"
_ID_WIDTH = 20
_KEY = re.compile(
    r"raw/exchange=(?P<exchange>[a-z][a-z0-9]+)/symbol=(?P<symbol>[A-Z0-9]+-[A-Z0-9]+)/"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})/(?P=exchange)-(?P=symbol)-"
    r"(?P<first>\d{20})-(?P<last>\d{20})(?P<suffix>\.jsonl\.gz|\.archive\.json)"
)
_ARCHIVE_FILE = re.compile(r"(?P<stem>[A-Za-z0-9][A-Za-z0-9_-]{0,120})(?P<suffix>\.zip|\.csv\.gz)")


@dataclass(frozen=True, order=True)
class RawKey:
    exchange: str
    symbol: Symbol
    day: date
    first_id: int
    last_id: int
    archive: bool = False
    """A coverage record of a bulk-archive file (not a JSON-lines file of trades)."""

    @property
    def key(self) -> str:
        return (f"{product_prefix(self.exchange, self.symbol)}date={self.day.isoformat()}/"
                f"{self.exchange}-{self.symbol}-{self.first_id:0{_ID_WIDTH}d}-"
                f"{self.last_id:0{_ID_WIDTH}d}{ARCHIVE_SUFFIX if self.archive else SUFFIX}")


def product_prefix(exchange: str, sym: str) -> str:
    return f"{RAW_ROOT}/exchange={exchange_name(exchange)}/symbol={symbol(sym)}/"


def day_prefix(exchange: str, sym: str, day: date) -> str:
    return f"{product_prefix(exchange, sym)}date={day.isoformat()}/"


def parse_key(key: str) -> RawKey | None:
    """The parts of a raw file key, or None for anything that is not one."""
    m = _KEY.fullmatch(key)
    if m is None:
        return None
    return RawKey(m["exchange"], Symbol(m["symbol"]), date.fromisoformat(m["date"]),
                  int(m["first"]), int(m["last"]), m["suffix"] == ARCHIVE_SUFFIX)


def archive_key(exchange: str, sym: str, filename: str, sha256: str) -> str:
    """Where a verified archive file is kept: named by the venue's name and its digest, so
    a file the venue later replaces is kept beside the old one, never over it."""
    m = _ARCHIVE_FILE.fullmatch(filename)
    if m is None or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise InvalidIdentifier(f"archive file name {filename!r} is not a plain .zip or .csv.gz file name")
    return f"{product_prefix(exchange, sym)}archives/{m['stem']}.{sha256[:16]}{m['suffix']}"
