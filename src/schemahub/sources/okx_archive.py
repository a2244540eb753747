"""OKX's daily trade archives (``static.okx.com``).

Facts this source relies on (../shared/reference/exchange-apis.md §7.1 and the findings in
../shared/fixtures/SOURCES.md, "Facts confirmed"):

* ``/cdn/okex/traderecords/trades/daily/{YYYYMMDD}/{INSTID}-trades-{YYYY-MM-DD}.zip``, one
  CSV per zip (no monthly files). Published after the day ends; a 404 means not (yet)
  published, or no trading that day.
* An OKX day is a day of UTC+8: the file dated D holds the trades from D-1 16:00 UTC to
  D 16:00 UTC (every first row found in real files is stamped 16:00:00.xxx UTC), so a UTC
  day needs the files dated D and D+1.
* The current header is ``instrument_name,trade_id,side,price,size,created_time`` (e.g.
  ``BTC-USDT,747835547,buy,104554.2,1.912e-05,1748707200531``): ``trade_id`` the REST
  ``tradeId`` (same id space; a mismatch shows up as an id check failure at the seam),
  ``side`` the taker's, sizes sometimes in scientific notation, ``created_time`` in ms.
  Older files had other headers (none before 2022, a bilingual GBK one): those are refused
  with the file named rather than guessed.
* No checksum is published: a file is trusted when its zip CRC, its header, its times (all
  inside the file's UTC+8 day) and its ids check out.
"""

from __future__ import annotations

from typing import ClassVar

from schemahub.sources.archive import ArchiveSource, CsvLayout, Period
from schemahub.sources.base import Product

COLUMNS = ("instrument_name", "trade_id", "side", "price", "size", "created_time")


class OkxArchive(ArchiveSource):
    name = "okx"
    default_url = "https://static.okx.com"
    monthly = False
    checksums = False
    datasets: ClassVar[dict[str, str]] = {"trades": "trades"}
    layouts: ClassVar[dict[str, CsvLayout]] = {
        "trades": CsvLayout(COLUMNS, id_column="trade_id", time_column="created_time", header=COLUMNS,
                            utc_offset_h=8),
    }
    mappings: ClassVar[dict[str, str]] = {"trades": "archive_trades"}

    def path(self, product: Product, dataset: str, period: Period) -> str:
        day = period.start
        return (f"/cdn/okex/traderecords/trades/daily/{day.strftime('%Y%m%d')}/"
                f"{product.native_id}-trades-{day.isoformat()}.zip")
