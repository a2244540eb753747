"""Binance's bulk archive of spot trades (``data.binance.vision``).

Facts this source relies on (../shared/reference/exchange-apis.md, section 2.6):

* ``data/spot/{daily|monthly}/{trades|aggTrades}/{SYMBOL}/{SYMBOL}-{dataset}-{YYYY-MM-DD|YYYY-MM}.zip``
  with a ``.CHECKSUM`` beside each (``<sha256>  <file name>``). Daily files appear the
  day after, monthly ones in the first week of the next month; a 404 means "not
  published" (or, for a day, no trading at all).
* One CSV per zip. Spot files have no header row (futures ones do since 2022: detected,
  not assumed); booleans are ``True``/``False`` (``true``/``false`` elsewhere: both read).
* ``trades`` rows: ``id, price, qty, quoteQty, time, isBuyerMaker, isBestMatch`` - the
  ``historicalTrades`` ids. ``aggTrades`` rows: ``aggTradeId, price, quantity,
  firstTradeId, lastTradeId, timestamp, isBuyerMaker, isBestMatch`` - the ``aggTrades`` ids.
* Times are milliseconds in files before 2025-01-01 and microseconds from then on.
* Files have been published out of id order and with id jumps: ``sources.archive.inspect``
  checks both.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from schemahub.sources.archive import ArchiveSource, CsvLayout, Period
from schemahub.sources.base import Product

MICROSECONDS_FROM = date(2025, 1, 1)


class BinanceArchive(ArchiveSource):
    name = "binance"
    default_url = "https://data.binance.vision"
    datasets: ClassVar[dict[str, str]] = {"historicalTrades": "trades", "aggTrades": "aggTrades"}
    layouts: ClassVar[dict[str, CsvLayout]] = {
        "trades": CsvLayout(("id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"),
                            id_column="id", time_column="time", micros_from=MICROSECONDS_FROM),
        "aggTrades": CsvLayout(("aggTradeId", "price", "quantity", "firstTradeId", "lastTradeId",
                                "timestamp", "isBuyerMaker", "isBestMatch"),
                               id_column="aggTradeId", time_column="timestamp",
                               micros_from=MICROSECONDS_FROM),
    }
    mappings: ClassVar[dict[str, str]] = {"trades": "archive_trades", "aggTrades": "archive_aggtrades"}

    def path(self, product: Product, dataset: str, period: Period) -> str:
        symbol = product.native_id
        return f"/data/spot/{period.kind}/{dataset}/{symbol}/{symbol}-{dataset}-{period.label}.zip"
