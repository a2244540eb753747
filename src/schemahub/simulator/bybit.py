"""Bybit spot, simulated: the v5 API's instrument list and recent trades, and the public
archive of daily trade files that is its only history.

Shapes follow the recordings in ../shared/fixtures/bybit/ (checked by a test): every API
answer is ``{"retCode": 0, "retMsg": "OK", "result": {...}, "retExtInfo": {}, "time": <ms>}``.
Over the IP limit the API answers HTTP 403 "access too frequent" (a ten-minute ban).

The archive (``/spot/{SYMBOL}/{SYMBOL}_{YYYY-MM-DD}.csv.gz``) holds one gzip CSV per UTC day,
with the header ``id,timestamp,price,volume,side`` (and ``rpi`` from 2025-03-13), rows
numbered from 1 in each file, ms times, lowercase taker sides, numbers without trailing
zeros; ``/spot/{SYMBOL}/`` is a plain HTML index of the published files. The ground truth
(``wire_trade``) is a trade in that form with SchemaHub's id: ``YYYYMMDD`` x 10^9 + the row's number.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, BinaryIO, ClassVar

import orjson

from schemahub.simulator.archive import ArchiveFaults, ArchiveHost, FileRequest
from schemahub.simulator.market import MS_CLOCK_ALWAYS, Market, ProductSpec, Trade, decimal_text, plain_number
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply
from schemahub.sources.archive import DAY_IDS, Period

if TYPE_CHECKING:
    from schemahub.simulator.server import Faults

RPI_FROM = date(2025, 3, 13)
"""Files of days from this one on carry a sixth column, ``rpi``."""


def _product(symbol: str, price: float, history: int, per_s: float, *, decimals: int = 2,
             size: float = 0.05) -> ProductSpec:
    base, quote = symbol.split("-")
    return ProductSpec(symbol, price, price_decimals=decimals, mean_size=size, trades_per_s=per_s,
                       history=history, native_id=base + quote, gap_rate=0.0, status="Trading",
                       ms_clock_before_us=MS_CLOCK_ALWAYS, daily_ids=True)


class BybitSim(SimulatedExchange):
    name = "bybit"
    default_products = (
        _product("BTC-USDT", 64_000.0, 30_000, 0.1),
        _product("ETH-USDT", 3_400.0, 20_000, 0.07, size=0.4),
        _product("SOL-USDT", 150.0, 8_000, 0.03, decimals=3, size=8.0),
    )
    test_products = (  # about 6, 4 and 3 days of history before the simulator's clock
        _product("BTC-USDT", 64_000.0, 5_000, 0.01),
        _product("ETH-USDT", 3_400.0, 2_500, 0.007, size=0.4),
        _product("SOL-USDT", 150.0, 1_000, 0.004, decimals=3, size=8.0),
    )
    traded = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    limits: ClassVar[dict[str, float]] = {"rate": 120.0, "burst": 600}  # 600 requests / 5 s per IP
    incremental_step_s = 86_400.0  # a day: the next file is published the day after

    def __init__(self, markets: Mapping[str, Market]) -> None:
        super().__init__(markets)
        self.archive = BybitArchiveHost(self.markets)

    def rate_limited(self) -> Reply:
        # Bybit does not throttle the IP limit, it bans: "403 access too frequent", 10+ minutes.
        return Reply(403, b"access too frequent", (("content-type", "text/plain"),))

    def admit(self, ip: str, path: str, query: Mapping[str, str], faults: Faults) -> tuple[Reply, str] | None:
        refused = super().admit(ip, path, query, faults)
        return None if refused is None else (refused[0], "418")  # counted as a ban

    def server_error(self, status: int) -> Reply:
        return self._error(10016, "Server error.", status)

    def route(self, path: str, query: Mapping[str, str], now_us: int, headers: Mapping[str, str]) -> Reply:
        if path == "/v5/market/instruments-info":
            if query.get("category") != "spot":
                return self._error(10001, "params error: category")
            return self._ok({"category": "spot", "list": [self._instrument(m) for m in self.markets.values()],
                             "nextPageCursor": ""}, now_us)
        if path == "/v5/market/recent-trade":
            market = self.markets.get(query.get("symbol", ""))
            if market is None or query.get("category") != "spot":
                return self._error(10001, "params error: symbol invalid")
            count = market.visible(now_us)
            recent = [self._recent(market, market.stream.trade(i, market.anchor_us))
                      for i in range(count - 1, max(-1, count - 61), -1)]
            return self._ok({"category": "spot", "list": recent}, now_us)
        return Reply(404, b"Not Found", (("content-type", "text/plain"),))

    def wire_trade(self, market: Market, trade: Trade, variant: bool = False) -> bytes:
        return orjson.dumps({"id": trade.trade_id, "timestamp": trade.time_us // 1000,
                             "price": plain_number(trade.price_units, trade.price_decimals),
                             "volume": plain_number(trade.size_units, trade.size_decimals),
                             "side": trade.taker_side})

    def _ok(self, result: object, now_us: int) -> Reply:
        return json_reply(200, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                                "time": now_us // 1000})

    def _error(self, code: int, message: str, status: int = 200) -> Reply:
        return json_reply(status, {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {},
                                   "time": 0})

    def _recent(self, market: Market, trade: Trade) -> dict[str, object]:
        return {"execId": str(2_100_000_000_000_000_000 + trade.trade_id % DAY_IDS + trade.time_us // 1000),
                "symbol": market.spec.native, "price": plain_number(trade.price_units, trade.price_decimals),
                "size": plain_number(trade.size_units, trade.size_decimals),
                "side": "Buy" if trade.taker_side == "buy" else "Sell", "time": str(trade.time_us // 1000),
                "isBlockTrade": False}

    def _instrument(self, market: Market) -> dict[str, object]:
        spec = market.spec
        return {"symbol": spec.native, "baseCoin": spec.base, "quoteCoin": spec.quote, "innovation": "0",
                "status": spec.status, "marginTrading": "both",
                "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001",
                                  "minOrderQty": "0.000048", "maxOrderQty": "399.9992", "minOrderAmt": "1",
                                  "maxOrderAmt": "2000000"},
                "priceFilter": {"tickSize": decimal_text(1, spec.price_decimals, spec.price_decimals)}}


_FILE = re.compile(r"/spot/(?P<symbol>[A-Z0-9]{2,30})/(?P=symbol)_(?P<day>\d{4}-\d{2}-\d{2})\.csv\.gz")
_INDEX = re.compile(r"/spot/(?P<symbol>[A-Z0-9]{2,30})/")


class BybitArchiveHost(ArchiveHost):
    prefix = "/spot/"

    def parse_path(self, path: str) -> FileRequest | None:
        m = _FILE.fullmatch(path)
        if m is None or m["symbol"] not in self.markets:
            return None
        try:
            day = date.fromisoformat(m["day"])
        except ValueError:
            return None
        return FileRequest(self.markets[m["symbol"]], "trades", Period(day, "daily"),
                           f"{m['symbol']}_{m['day']}.csv.gz", False)

    def serve(self, path: str, now_us: int, faults: ArchiveFaults) -> Reply:
        index = _INDEX.fullmatch(path)
        if index is not None and index["symbol"] in self.markets:
            return Reply(200, self._index(self.markets[index["symbol"]], now_us, faults),
                         (("content-type", "text/html"),))
        if path.endswith(".CHECKSUM"):  # Bybit publishes none
            return Reply(404, b"Not Found", (("content-type", "text/plain"),))
        return super().serve(path, now_us, faults)

    def _index(self, market: Market, now_us: int, faults: ArchiveFaults) -> bytes:
        """The folder's HTML index: a link per published file, as public.bybit.com lists them."""
        native = market.spec.native
        first = market.stream.trade(0, market.anchor_us).time_us // 86_400_000_000
        last = now_us // 86_400_000_000
        links = []
        for number in range(first, last + 1):
            day = date(1970, 1, 1) + timedelta(days=number)
            request = FileRequest(market, "trades", Period(day, "daily"), f"{native}_{day}.csv.gz", False)
            if self.published(request.period, now_us, faults) and self.has_trades(request):
                links.append(f'<a href="{request.filename}">{request.filename}</a>')
        return (f"<html><head><title>Index of /spot/{native}/</title></head><body><pre>"
                + "\n".join(links) + "</pre></body></html>").encode()

    def build(self, request: FileRequest, faults: ArchiveFaults, sink: BinaryIO) -> None:
        label, market = request.period.label, request.market
        start, stop = self.trade_range(market, request.period)
        start = min(stop, start + faults.leave_out_first.get(label, 0))
        order = list(range(start, stop))
        if label in faults.out_of_order and len(order) > 1:
            cut = len(order) - min(10, len(order) // 2)
            order = order[cut:] + order[:cut]
        rpi = request.period.start >= RPI_FROM
        with gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) as out:
            out.write(b"id,timestamp,price,volume,side" + (b",rpi\n" if rpi else b"\n"))
            rows = []
            for index in order:
                trade = market.stream.trade(index, market.anchor_us)
                rows.append(f"{trade.trade_id % DAY_IDS},{trade.time_us // 1000},"
                            f"{plain_number(trade.price_units, trade.price_decimals)},"
                            f"{plain_number(trade.size_units, trade.size_decimals)},{trade.taker_side}"
                            f"{',0' if rpi else ''}\n")
            out.write("".join(rows).encode())
