"""Binance's bulk archive (data.binance.vision), simulated from the REST API's own trades.

Layout and format as ../shared/reference/exchange-apis.md section 2.6 describes them::

    /data/spot/{daily|monthly}/{trades|aggTrades}/{SYMBOL}/{SYMBOL}-{kind}-{YYYY-MM-DD|YYYY-MM}.zip
    ... .zip.CHECKSUM       "<sha256>  <file name>"

Each zip holds one CSV named like it, without a header row; booleans are ``True``/
``False``; times are milliseconds for periods before 2025-01-01 and microseconds from
then on. ``trades`` rows are ``id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch`` (the
historicalTrades fields), ``aggTrades`` rows ``aggTradeId,price,quantity,firstTradeId,
lastTradeId,timestamp,isBuyerMaker,isBestMatch``. ``trades`` files are written a million
rows at a time with Arrow (the benchmark serves tens of millions of trades).
"""

from __future__ import annotations

import bisect
import re
import zipfile
from array import array
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from schemahub.simulator.archive import ArchiveFaults, ArchiveHost, FileRequest
from schemahub.simulator.market import Market
from schemahub.sources.archive import Period

if TYPE_CHECKING:
    from schemahub.simulator.binance import BinanceSim

MICROSECONDS_FROM = date(2025, 1, 1)
"""Spot archive times are µs in files of periods from this day on, ms before."""
MICROSECONDS_FROM_US = 1_735_689_600_000_000
"""The same day in µs: the exchange's clock had whole milliseconds before it."""
_PATH = re.compile(r"/data/spot/(?P<period>daily|monthly)/(?P<kind>trades|aggTrades)/"
                   r"(?P<symbol>[A-Z0-9]{2,30})/(?P=symbol)-(?P=kind)-(?P<label>\d{4}-\d{2}(?:-\d{2})?)\.zip(?P<checksum>\.CHECKSUM)?")
_BATCH = 1_000_000
_HEADERS = {"trades": "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match",
            "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
                         "is_buyer_maker,is_best_match"}


class BinanceArchive(ArchiveHost):
    prefix = "/data/spot/"

    def __init__(self, api: BinanceSim, markets: Mapping[str, Market], cache_dir: Path | None = None) -> None:
        super().__init__(markets, cache_dir)
        self.api = api

    def parse_path(self, path: str) -> FileRequest | None:
        m = _PATH.fullmatch(path)
        if m is None or m["symbol"] not in self.markets:
            return None
        daily = m["period"] == "daily"
        label = m["label"]
        if daily != (len(label) == 10):
            return None
        try:
            start = date.fromisoformat(label if daily else f"{label}-01")
        except ValueError:
            return None
        period = Period(start, "daily" if daily else "monthly")
        filename = f"{m['symbol']}-{m['kind']}-{label}.zip"
        return FileRequest(self.markets[m["symbol"]], m["kind"], period, filename, m["checksum"] is not None)

    def build(self, request: FileRequest, faults: ArchiveFaults, sink: BinaryIO) -> None:
        label = request.period.label
        member = request.filename.removesuffix(".zip") + ".csv"
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf, \
                zf.open(member, "w", force_zip64=True) as out:
            if label in faults.header:
                out.write(_HEADERS[request.kind].encode() + b"\n")
            start, stop = self.trade_range(request.market, request.period)
            start = min(stop, start + faults.leave_out_first.get(label, 0))
            micros = (request.period.start >= MICROSECONDS_FROM) != (label in faults.wrong_unit)
            if request.kind == "trades":
                blocks = [(lo, min(stop, lo + _BATCH)) for lo in range(start, stop, _BATCH)]
                if label in faults.out_of_order and stop - start > 1:  # the last rows come first
                    cut = stop - min(10, (stop - start) // 2)
                    blocks = [(cut, stop), (start, cut)]
                for lo, hi in blocks:
                    _write(out, trade_rows(request.market, lo, hi, micros, faults.lowercase_bools))
            else:
                rows = self._aggregate_rows(request.market, start, stop, micros, faults.lowercase_bools)
                if label in faults.out_of_order and len(rows) > 1:
                    cut = len(rows) - min(10, len(rows) // 2)
                    rows = rows[cut:] + rows[:cut]
                out.write(b"".join(rows))

    def _aggregate_rows(self, market: Market, start: int, stop: int, micros: bool,
                        lowercase: bool) -> list[bytes]:
        """Aggregates that begin in [start, stop), numbered as the REST API numbers them."""
        starts = self.api.aggregate_starts(market, stop)
        first, last = bisect.bisect_left(starts, start), bisect.bisect_left(starts, stop)
        rows = []
        for k in range(first, last):
            lo = starts[k]
            hi = min(starts[k + 1], stop) if k + 1 < len(starts) else stop
            trades = market.trades(lo, hi)
            head, spec = trades[0], market.spec
            when = head.time_us if micros else head.time_us // 1000
            maker = _bool(head.taker_side == "sell", lowercase)
            quantity = sum(t.size_units for t in trades)
            rows.append(f"{k + 1},{_text(head.price_units, spec.price_decimals)},"
                        f"{_text(quantity, spec.size_decimals)},{head.trade_id},{trades[-1].trade_id},"
                        f"{when},{maker},{_bool(True, lowercase)}\n".encode())
        return rows


def trade_rows(market: Market, start: int, stop: int, micros: bool, lowercase: bool = False) -> pa.Table:
    """Trades [start, stop) as the archive's string columns, computed column-wise."""
    stream, spec = market.stream, market.spec
    ids = _int64(stream.ids[start:stop])
    times = pc.add(_int64(stream.offsets_us[start:stop]), market.anchor_us)
    clock = spec.ms_clock_before_us
    if clock:  # before the venue's µs clock, times are whole milliseconds (as on the exchange)
        whole_ms = pc.multiply(pc.divide(times, 1000), 1000)
        times = pc.if_else(pc.less(times, clock), whole_ms, times)
    if not micros:
        times = pc.divide(times, 1000)
    prices = _int64(stream.prices[start:stop])
    sizes = _int64(stream._sizes[start:stop])
    quote = pc.multiply(prices, sizes)
    quote_decimals = spec.price_decimals + spec.size_decimals
    if quote_decimals > 8:
        scale = 10 ** (quote_decimals - 8)
        quote, quote_decimals = pc.divide(pc.add(quote, scale // 2), scale), 8
    sides = stream.sides[start:stop]
    taker_bought = pa.Array.from_buffers(pa.uint8(), len(sides), [None, pa.py_buffer(sides)])
    true, false = ("true", "false") if lowercase else ("True", "False")
    maker = pc.if_else(pc.equal(taker_bought, 1), false, true)
    return pa.table({
        "id": pc.cast(ids, pa.string()),
        "price": _decimals(prices, spec.price_decimals),
        "qty": _decimals(sizes, spec.size_decimals),
        "quoteQty": _decimals(quote, quote_decimals),
        "time": pc.cast(times, pa.string()),
        "isBuyerMaker": maker,
        "isBestMatch": pa.array([true] * len(ids), pa.string()),
    })


def _int64(values: array[int]) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _decimals(units: pa.Array, decimals: int, shown: int = 8) -> pa.Array:
    """``units`` x 10^-decimals with exactly ``shown`` decimals (Binance writes 8)."""
    assert decimals <= shown, "the simulator's products have at most 8 decimals"
    scaled = pc.multiply(units, 10 ** (shown - decimals))
    whole = pc.divide(scaled, 10 ** shown)
    fraction = pc.subtract(scaled, pc.multiply(whole, 10 ** shown))
    padded = pc.utf8_lpad(pc.cast(fraction, pa.string()), shown, "0")
    return pc.binary_join_element_wise(pc.cast(whole, pa.string()), padded, ".")


def _text(units: int, decimals: int) -> str:
    from schemahub.simulator.market import decimal_text

    return decimal_text(units, decimals, 8)


def _bool(value: bool, lowercase: bool) -> str:
    text = "True" if value else "False"
    return text.lower() if lowercase else text


def _write(out: IO[bytes], table: pa.Table) -> None:
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))
