"""Where raw files live and what their names mean (pure: no I/O).

::

    raw/exchange=<exchange>/symbol=<BASE-QUOTE>/date=<YYYY-MM-DD>/
        <exchange>-<BASE-QUOTE>-<first trade id:020>-<last trade id:020>.jsonl.gz

``date`` is the UTC day of the file's first trade, so the path is a function of the
content: fetching the same range again produces the same key. Hive-style ``k=v``
folders let Athena/DuckDB prune by exchange, symbol and day. Ids are zero-padded so
lexicographic order is numeric order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from schemahub.identifiers import Symbol, exchange_name, symbol

RAW_ROOT = "raw"
SUFFIX = ".jsonl.gz"
_ID_WIDTH = 20
_KEY = re.compile(
    r"raw/exchange=(?P<exchange>[a-z][a-z0-9]+)/symbol=(?P<symbol>[A-Z0-9]+-[A-Z0-9]+)/"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})/(?P=exchange)-(?P=symbol)-"
    r"(?P<first>\d{20})-(?P<last>\d{20})\.jsonl\.gz"
)


@dataclass(frozen=True, order=True)
class RawKey:
    exchange: str
    symbol: Symbol
    day: date
    first_id: int
    last_id: int

    @property
    def key(self) -> str:
        return (f"{product_prefix(self.exchange, self.symbol)}date={self.day.isoformat()}/"
                f"{self.exchange}-{self.symbol}-{self.first_id:0{_ID_WIDTH}d}-"
                f"{self.last_id:0{_ID_WIDTH}d}{SUFFIX}")


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
                  int(m["first"]), int(m["last"]))
