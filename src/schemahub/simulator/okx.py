"""OKX's public REST API (v5) and its daily trade archive, simulated with their real formats.

Shapes follow the recordings in ../shared/fixtures/okx/ (checked by a test): every answer
is ``{"code": "0", "msg": "", "data": [...]}`` with string values; history trades come
newest first, ``after=<tradeId>`` gives older ones, at most 100; ``side`` is the taker's;
``ts`` is in ms. Throttled: HTTP 429 with code 50011.

The archive (``/cdn/okex/traderecords/trades/daily/{YYYYMMDD}/{INSTID}-trades-{YYYY-MM-DD}.zip``)
holds one CSV per UTC+8 day with the header ``instrument_name,trade_id,side,price,size,
created_time``, the REST trade ids, sizes below 1e-4 in scientific notation; no checksum.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from datetime import date
from typing import BinaryIO, ClassVar

from schemahub.simulator.aggregates import buckets
from schemahub.simulator.archive import ArchiveFaults, ArchiveHost, FileRequest
from schemahub.simulator.market import MS_CLOCK_ALWAYS, Market, ProductSpec, Trade, plain_number
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply
from schemahub.sources.archive import Period
from schemahub.sources.okx_archive import COLUMNS

MAX_LIMIT = 100


def _product(symbol: str, price: float, history: int, per_s: float, first_id: int, *, decimals: int = 1,
             size: float = 0.05, gap_rate: float = 1e-4) -> ProductSpec:
    return ProductSpec(symbol, price, price_decimals=decimals, mean_size=size, trades_per_s=per_s,
                       history=history, first_id=first_id, gap_rate=gap_rate, status="live",
                       ms_clock_before_us=MS_CLOCK_ALWAYS)


def _error(status: int, code: str, msg: str) -> Reply:
    return json_reply(status, {"code": code, "msg": msg, "data": []})


class OkxSim(SimulatedExchange):
    name = "okx"
    default_products = (
        _product("BTC-USDT", 64_000.0, 20_000, 5.0, 734_000_001),
        _product("ETH-USDT", 3_400.0, 12_000, 3.0, 512_000_001, decimals=2, size=0.4),
        _product("SOL-USDT", 150.0, 6_000, 1.0, 95_000_001, decimals=3, size=8.0),
    )
    test_products = (
        _product("BTC-USDT", 64_000.0, 3_000, 4.0, 734_000_001, gap_rate=0.002),
        _product("ETH-USDT", 3_400.0, 1_500, 2.0, 512_000_001, decimals=2, size=0.4, gap_rate=0.0),
        _product("SOL-USDT", 150.0, 700, 1.0, 95_000_001, decimals=3, size=8.0, gap_rate=0.0),
    )
    traded = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    limits: ClassVar[dict[str, float]] = {"rate": 10.0, "burst": 20}  # 20 requests / 2 s per IP

    def __init__(self, markets: Mapping[str, Market]) -> None:
        super().__init__(markets)
        self.archive = OkxArchiveHost(self.markets)

    def rate_limited(self) -> Reply:
        return _error(429, "50011", "Too Many Requests")

    def server_error(self, status: int) -> Reply:
        return _error(status, "50001", "Service temporarily unavailable. Please try again later.")

    def route(self, path: str, query: Mapping[str, str], now_us: int, headers: Mapping[str, str]) -> Reply:
        if path == "/api/v5/public/instruments":
            if query.get("instType") != "SPOT":
                return _error(400, "51000", "Parameter instType error")
            return json_reply(200, {"code": "0", "data": [self._instrument(m) for m in self.markets.values()],
                                    "msg": ""})
        if path == "/api/v5/market/history-candles":
            return self._candles(query, now_us)
        if path != "/api/v5/market/history-trades":
            return _error(404, "50000", "Not found")
        market = self.markets.get(query.get("instId", ""))
        if market is None:
            return _error(400, "51001", "Instrument ID does not exist")
        try:
            limit = int(query.get("limit", str(MAX_LIMIT)))
            after = int(query["after"]) if "after" in query else None
        except ValueError:
            return _error(400, "51000", "Parameter after error")
        if query.get("type", "1") != "1" or not 1 <= limit <= MAX_LIMIT:
            return _error(400, "51000", "Parameter limit error")
        count = market.visible(now_us)
        stop = count if after is None else market.index_below(after, count)  # ids < after
        rows = self.page_bytes(market, max(0, stop - limit), stop, newest_first=True)
        return Reply(200, b'{"code":"0","msg":"","data":%s}' % rows)

    def _candles(self, query: Mapping[str, str], now_us: int) -> Reply:
        """``history-candles``: rows ``[ts ms, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``,
        newest first, 100 at most, older than ``after`` and newer than ``before`` (ms)."""
        market = self.markets.get(query.get("instId", ""))
        if market is None:
            return _error(400, "51001", "Instrument ID does not exist")
        if query.get("bar", "1m") != "1m":
            return _error(400, "51000", "Parameter bar error")
        try:
            limit = int(query.get("limit", "100"))
            after = int(query["after"]) * 1000 if "after" in query else now_us  # candles starting before
            before = int(query["before"]) * 1000 if "before" in query else -1  # ... and after this
        except ValueError:
            return _error(400, "51000", "Parameter after error")
        spec = market.spec
        minute = 60_000_000
        found = buckets(market, market.visible(now_us), max(0, before - before % minute),
                        after - after % minute + minute, 60, self.misreports)
        rows = []
        def price(units: int) -> str:
            return plain_number(units, spec.price_decimals)

        for b in reversed([b for b in found if before < b.start_us < after][-limit:]):
            notional = plain_number(b.notional_units, spec.price_decimals + spec.size_decimals)
            volume = plain_number(b.volume_units, spec.size_decimals)
            rows.append([str(b.start_us // 1000), price(b.open_units), price(b.high_units),
                         price(b.low_units), price(b.close_units), volume, notional, notional, "1"])
        return json_reply(200, {"code": "0", "msg": "", "data": rows})

    def wire_trade(self, market: Market, trade: Trade, variant: bool = False) -> bytes:
        return (f'{{"instId":"{market.spec.native}","side":"{trade.taker_side}","sz":"{trade.size}",'
                f'"px":"{trade.price}","tradeId":"{trade.trade_id}",'
                f'"ts":"{trade.time_us // 1000}"}}').encode()

    def _instrument(self, market: Market) -> dict[str, str]:
        spec = market.spec
        step = "1" if spec.price_decimals == 0 else "0." + "0" * (spec.price_decimals - 1) + "1"
        return {"alias": "", "baseCcy": spec.base, "category": "1", "ctMult": "", "ctType": "", "ctVal": "",
                "ctValCcy": "", "expTime": "", "instId": spec.native, "instType": "SPOT", "lever": "10",
                "listTime": "1548133413000", "lotSz": "0.00000001", "maxIcebergSz": "9999999999",
                "maxLmtSz": "9999999999", "maxMktSz": "1000000", "maxStopSz": "1000000",
                "maxTriggerSz": "9999999999", "maxTwapSz": "9999999999", "minSz": "0.00001", "optType": "",
                "quoteCcy": spec.quote, "settleCcy": "", "state": spec.status, "stk": "", "tickSz": step,
                "uly": ""}


_PATH = re.compile(r"/cdn/okex/traderecords/trades/daily/(?P<compact>\d{8})/"
                   r"(?P<inst>[A-Z0-9]{1,20}-[A-Z0-9]{1,20})-trades-(?P<day>\d{4}-\d{2}-\d{2})\.zip")
_ROWS = 100_000
_OLD_HEADER = "trade_id/交易id,side/交易方向,size/数量,price/价格,created_time/成交时间"


class OkxArchiveHost(ArchiveHost):
    prefix = "/cdn/okex/traderecords/"
    utc_offset_h = 8

    def parse_path(self, path: str) -> FileRequest | None:
        m = _PATH.fullmatch(path)
        if m is None or m["inst"] not in self.markets:
            return None
        try:
            day = date.fromisoformat(m["day"])
        except ValueError:
            return None
        if day.strftime("%Y%m%d") != m["compact"]:
            return None
        filename = f"{m['inst']}-trades-{m['day']}.zip"
        return FileRequest(self.markets[m["inst"]], "trades", Period(day, "daily"), filename, False)

    def serve(self, path: str, now_us: int, faults: ArchiveFaults) -> Reply:
        if path.endswith(".CHECKSUM"):  # OKX publishes none
            return Reply(404, b"Not Found", (("content-type", "text/plain"),))
        return super().serve(path, now_us, faults)

    def build(self, request: FileRequest, faults: ArchiveFaults, sink: BinaryIO) -> None:
        label, market = request.period.label, request.market
        member = request.filename.removesuffix(".zip") + ".csv"
        start, stop = self.trade_range(market, request.period)
        start = min(stop, start + faults.leave_out_first.get(label, 0))
        order = list(range(start, stop))
        if label in faults.out_of_order and len(order) > 1:  # the last rows come first
            cut = len(order) - min(10, len(order) // 2)
            order = order[cut:] + order[:cut]
        micros = label in faults.wrong_unit
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf, \
                zf.open(member, "w", force_zip64=True) as out:
            # (the `header` knob: the bilingual header of older files, which SchemaHub refuses)
            out.write((_OLD_HEADER if label in faults.header else ",".join(COLUMNS)).encode() + b"\n")
            for lo in range(0, len(order), _ROWS):
                rows = [_row(market, market.stream.trade(i, market.anchor_us), micros)
                        for i in order[lo:lo + _ROWS]]
                out.write("".join(rows).encode())


def _row(market: Market, trade: Trade, micros: bool) -> str:
    size = trade.size
    if float(size) < 1e-4:
        size = repr(float(size))  # OKX writes small sizes in scientific notation: 1.912e-05
    when = trade.time_us if micros else trade.time_us // 1000
    return f"{market.spec.native},{trade.trade_id},{trade.taker_side},{trade.price},{size},{when}\n"
