"""Bybit's public archive of spot trades (``public.bybit.com``).

Facts this source relies on (../shared/reference/exchange-apis.md §7.3; a real file,
``spot-archive-trades_UNIUSDC_2025-05-17_rt-data.csv`` in ../shared/fixtures/bybit/):

* ``/spot/{SYMBOL}/{SYMBOL}_{YYYY-MM-DD}.csv.gz``, one gzip CSV per symbol and UTC day,
  published the next day; a 404 means not (yet) published, or no trading that day. No
  checksum is published: the gzip CRC, the header and the rows are checked instead.
* A header row always: ``id,timestamp,price,volume,side`` until 2025-03-12, with a sixth
  column ``rpi`` from 2025-03-13 - columns are found by name. ``timestamp`` in ms, ``side``
  the taker's (``buy``/``sell``).
* ``/spot/{SYMBOL}/`` is a plain HTML index of the symbol's files: one request says which
  days exist (a cold start from --since 2020 asks for those days only).
* ``id`` numbers the rows of each file from 1, without gaps: it is not the REST ``execId``.
  SchemaHub's trade id for a row is therefore ``YYYYMMDD`` x 10^9 + ``id``
  (``20250517000000219``: day 2025-05-17, row 219), flagged ``id_kind = derived``: exact,
  unique, ordered in time, stable across re-downloads of the same file.
"""

from __future__ import annotations

import io
import re
from datetime import date
from typing import ClassVar

from schemahub.errors import ArchiveError
from schemahub.metrics.counters import RequestStats
from schemahub.sources.archive import ArchiveSource, CsvLayout, Period
from schemahub.sources.base import Product

_LINK = re.compile(rb'href="(?:[^"]*/)?(?P<symbol>[A-Z0-9]{2,30})_(?P<day>\d{4}-\d{2}-\d{2})\.csv\.gz"')


class BybitArchive(ArchiveSource):
    name = "bybit"
    default_url = "https://public.bybit.com"
    monthly = False
    checksums = False
    day_numbered = True
    datasets: ClassVar[dict[str, str]] = {"trades": "trades"}
    layouts: ClassVar[dict[str, CsvLayout]] = {
        "trades": CsvLayout(("id", "timestamp", "price", "volume", "side"), id_column="id",
                            time_column="timestamp", named_columns=True),
    }
    mappings: ClassVar[dict[str, str]] = {"trades": "trades"}  # bybit.trades.yaml: the only source

    def path(self, product: Product, dataset: str, period: Period) -> str:
        symbol = product.native_id
        return f"/spot/{symbol}/{symbol}_{period.start.isoformat()}.csv.gz"

    def listing(self, product: Product, dataset: str, stats: RequestStats | None = None) -> set[date] | None:
        index = io.BytesIO()
        if self.client.download(f"/spot/{product.native_id}/", index, stats=stats) is None:
            return set()  # no folder: the symbol has no file yet
        days = set()
        for m in _LINK.finditer(index.getvalue()):
            if m["symbol"].decode() == product.native_id:
                try:
                    days.add(date.fromisoformat(m["day"].decode()))
                except ValueError:
                    raise ArchiveError(f"the index of /spot/{product.native_id}/ lists a file dated "
                                       f"{m['day'].decode()!r}") from None
        return days
