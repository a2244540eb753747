"""Real recorded exchange responses, through the real connector, raw file, reader and mapping.

Each recording is served over httpx (MockTransport) to the exchange's connector; what the
connector returns is written as a raw file exactly as ingest writes it, read back with
DuckDB and mapped by the packaged YAML. The rows must equal:

* golden rows checked by hand against the exchange's documentation - each expected value
  is explained next to it; and
* for every row of the recording, an independent oracle written here in plain Python
  (no mapping, no Arrow): it catches a wrong rule the goldens might not sample.

MIT-sourced recordings live in tests/fixtures/; LGPL-sourced ones (nautilus_trader) are
read from ../shared/fixtures/ and the test skips when that folder is absent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemahub.http.client import ExchangeClient
from schemahub.infra.storage import LocalStorage
from schemahub.ingest.connect import client_config
from schemahub.raw import files
from schemahub.raw.layout import RawKey
from schemahub.settings import Settings
from schemahub.sources.base import Product, RawTrade, TradeSource
from schemahub.sources.binance import Binance
from schemahub.sources.bitfinex import Bitfinex
from schemahub.sources.bybit import Bybit
from schemahub.sources.coinbase import Coinbase
from schemahub.sources.kraken import Kraken
from schemahub.sources.okx import Okx
from schemahub.timeutil import from_us
from schemahub.transform import engine
from schemahub.transform.mapping import packaged
from schemahub.transform.reader import RawFile, RawReader
from tests.helpers import recording

FETCHED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _source(cls: type[TradeSource], body: Any, endpoint: str | None = None,
            by_path: dict[str, Any] | None = None) -> TradeSource:
    """``cls`` answered with ``body`` (or, by request path, the bodies of ``by_path``)."""
    def handler(request: httpx.Request) -> httpx.Response:
        if by_path is not None:
            return httpx.Response(200, json=by_path[request.url.path])
        return httpx.Response(200, json=body)

    env = {"SCHEMAHUB_RETRY_MAX_ATTEMPTS": "1"}
    config = client_config(Settings.load("lake", env=env), cls, unlimited=True)
    return cls(ExchangeClient(cls.name, config, transport=httpx.MockTransport(handler)), endpoint)


def _unify(tmp_path: Path, source: TradeSource, product: Product, trades: list[RawTrade],
           time_unit: str | None) -> list[dict[str, Any]]:
    """Write ``trades`` as ingest would, read them back with DuckDB, map them: unified rows."""
    first_us, last_us = (source.trade_time_us(t.record) for t in (trades[0], trades[-1]))
    header = files.RawHeader(
        exchange=source.name, symbol=product.symbol, native_id=product.native_id, endpoint=source.endpoint,
        time_unit=time_unit, covers_after_id=trades[0].trade_id - 1, covers_through_id=trades[-1].trade_id,
        first_trade_id=trades[0].trade_id, last_trade_id=trades[-1].trade_id, trade_count=len(trades),
        first_trade_time=from_us(first_us), last_trade_time=from_us(last_us), missing_ids=[],
        fetched_at=FETCHED, requests=[], writer=files.WriterMeta(run_id="t", owner="t", lease_token=1))
    key = RawKey(source.name, product.symbol, from_us(first_us).date(), trades[0].trade_id,
                 trades[-1].trade_id).key
    storage = LocalStorage(tmp_path)
    storage.create(key, files.encode(header, trades))
    raw_file = RawFile(0, key, storage.url_for(key), source.name, product.symbol, source.endpoint,
                       trades[0].trade_id, trades[-1].trade_id, FETCHED.isoformat(), len(trades), time_unit)
    mapping = packaged(source.name, source.endpoint)
    reader = RawReader()
    try:
        applied = engine.apply(mapping, reader.read([raw_file], mapping))
    finally:
        reader.close()
    assert applied.rejected == {}
    return sorted(applied.table.to_pylist(), key=lambda r: int(r["trade_id"]))


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _row(exchange: str, symbol: str, trade_id: str, id_kind: str, side: str, price: float, quantity: float,
         trade_ts: str) -> dict[str, Any]:
    moment = _utc(trade_ts)
    return {"exchange": exchange, "symbol": symbol, "trade_id": trade_id, "id_kind": id_kind, "side": side,
            "price": price, "quantity": quantity, "trade_ts": moment, "ingest_ts": FETCHED,
            "trade_date": moment.date()}


def _check(rows: list[dict[str, Any]], golden: list[dict[str, Any]], oracle: list[dict[str, Any]]) -> None:
    by_id = {r["trade_id"]: r for r in rows}
    for expected in golden:
        assert by_id[expected["trade_id"]] == expected
    assert rows == oracle


# -- Coinbase --------------------------------------------------------------------------------


def test_coinbase_trade_recording(tmp_path: Path) -> None:
    body = recording("coinbase/trades_BTC-USDT_limit1_2024-03-13_ccxt-static.json")
    source = _source(Coinbase, body)
    product = Product("BTC-USDT", "BTC-USDT", "online", True)  # type: ignore[arg-type]
    assert isinstance(source, Coinbase)
    trades = source.fetch_range(product, 18502033, 18502034).trades
    rows = _unify(tmp_path, source, product, trades, None)
    golden = [
        # {"trade_id": "18502034", "side": "sell", "size": "0.00007448", "price": "73271.63000000",
        #  "time": "2024-03-13T11:00:17.710679Z"}
        # - trade_id arrived as a JSON string: kept as the text "18502034";
        # - side "sell" is the MAKER side (Coinbase docs: "the maker order side"): a resting sell was
        #   lifted, so the TAKER bought -> "buy" (ccxt's parsedResponse for this very trade says "buy");
        # - six fractional digits, UTC ("Z"): 11:00:17.710679 on 2024-03-13.
        _row("coinbase", "BTC-USDT", "18502034", "trade", "buy", 73271.63, 0.00007448,
             "2024-03-13T11:00:17.710679"),
    ]
    oracle = [_row("coinbase", "BTC-USDT", str(int(t["trade_id"])), "trade",
                   {"buy": "sell", "sell": "buy"}[t["side"]], float(t["price"]), float(t["size"]),
                   t["time"].removesuffix("Z")) for t in body]
    _check(rows, golden, oracle)


def test_coinbase_product_recording_normalizes_every_symbol() -> None:
    body = recording("coinbase/products_all_2021-04-17_cryptofeed.json")
    products = _source(Coinbase, body).list_products()
    assert len(products) == 162
    for item, product in zip(body, products, strict=True):
        assert product.symbol == f"{item['base_currency']}-{item['quote_currency']}" == item["id"]


# -- Binance ---------------------------------------------------------------------------------

BTCUSDT = Product("BTC-USDT", "BTCUSDT", "TRADING", True)  # type: ignore[arg-type]


def _binance_oracle(records: list[dict[str, Any]], id_key: str, time_key: str, side_key: str,
                    price_key: str, qty_key: str, kind: str) -> list[dict[str, Any]]:
    # Binance: "isBuyerMaker"/"m" true means the buyer was the maker, so the taker SOLD; times in ms.
    return [_row("binance", "BTC-USDT", str(r[id_key]), kind, "sell" if r[side_key] else "buy",
                 float(r[price_key]), float(r[qty_key]),
                 from_us(r[time_key] * 1000).replace(tzinfo=None).isoformat()) for r in records]


@pytest.mark.parametrize("name", ["historicalTrades_BTCUSDT-inferred_10items_2021-10-22_nautilus.json",
                                  "trades_BTCUSDT-inferred_10items_2021-10-22_nautilus.json"])
def test_binance_trade_recordings(tmp_path: Path, name: str) -> None:
    body = recording(f"binance/{name}")
    source = _source(Binance, body, "historicalTrades")  # /trades rows have the same shape
    assert isinstance(source, Binance)
    trades = source.fetch_range(BTCUSDT, body[0]["id"] - 1, body[-1]["id"]).trades
    rows = _unify(tmp_path, source, BTCUSDT, trades, "ms")  # recorded without X-MBX-TIME-UNIT: ms
    golden = {
        "historicalTrades": [
            # id 1111471896, price "60814.78000000", qty "0.00034000", time 1634943219887 (ms),
            # isBuyerMaker true -> the buyer rested on the book, the TAKER sold -> "sell";
            # 1634943219887 ms = 2021-10-22 22:53:39.887 UTC.
            _row("binance", "BTC-USDT", "1111471896", "trade", "sell", 60814.78, 0.00034,
                 "2021-10-22T22:53:39.887"),
            # id 1111471897: isBuyerMaker false -> the taker bought; 1634943219918 ms -> 22:53:39.918.
            _row("binance", "BTC-USDT", "1111471897", "trade", "buy", 60814.79, 0.003,
                 "2021-10-22T22:53:39.918"),
            # id 1111471905 (last): isBuyerMaker false -> buy; 1634943220769 ms -> 22:53:40.769.
            _row("binance", "BTC-USDT", "1111471905", "trade", "buy", 60814.79, 0.06902,
                 "2021-10-22T22:53:40.769"),
        ],
        "trades": [
            # id 1111468873: isBuyerMaker true -> sell; 1634942949263 ms -> 22:49:09.263 UTC.
            _row("binance", "BTC-USDT", "1111468873", "trade", "sell", 60650.0, 0.02924,
                 "2021-10-22T22:49:09.263"),
        ],
    }[name.split("_")[0]]
    _check(rows, golden, _binance_oracle(body, "id", "time", "isBuyerMaker", "price", "qty", "trade"))


def test_binance_aggregate_recording(tmp_path: Path) -> None:
    body = recording("binance/aggTrades_BTCUSDT-inferred_10items_2021-10-22_nautilus.json")
    source = _source(Binance, body, "aggTrades")
    assert isinstance(source, Binance)
    trades = source.fetch_range(BTCUSDT, body[0]["a"] - 1, body[-1]["a"]).trades
    rows = _unify(tmp_path, source, BTCUSDT, trades, "ms")
    golden = [
        # a 966492862 is an AGGREGATE id (its fill is trade 1111480471, "f" = "l"): id_kind "aggregate";
        # m false -> the buyer was the taker -> "buy"; T 1634944096633 ms -> 2021-10-22 23:08:16.633 UTC.
        _row("binance", "BTC-USDT", "966492862", "aggregate", "buy", 60759.6, 0.00841,
             "2021-10-22T23:08:16.633"),
        # a 966492864: m true -> the taker sold.
        _row("binance", "BTC-USDT", "966492864", "aggregate", "sell", 60759.59, 0.00037,
             "2021-10-22T23:08:16.877"),
    ]
    _check(rows, golden, _binance_oracle(body, "a", "T", "m", "p", "q", "aggregate"))


@pytest.mark.parametrize("relative", ["binance/exchangeInfo_all_2021-10-12_cryptofeed.json",
                                      "binance/exchangeInfo_symbols-subset_2021-10-22_nautilus.json"])
def test_binance_symbols_come_from_base_and_quote_assets(relative: str) -> None:
    body = recording(relative)
    source = _source(Binance, body)
    products = source.list_products()
    assert len(products) == len(body["symbols"])
    by_native = {p.native_id: p for p in products}
    assert by_native["BTCUSDT"].symbol == "BTC-USDT" and by_native["BTCUSDT"].tradable
    for item in body["symbols"]:
        product = by_native[item["symbol"]]
        assert product.symbol == f"{item['baseAsset']}-{item['quoteAsset']}"  # never a guessed split
        assert product.tradable == (item["status"] == "TRADING")
    # the recorded budget (1200 weight/min in 2021) replaces the default 6000
    assert source.client.weight_per_minute == 1200


# -- Kraken ----------------------------------------------------------------------------------


def test_kraken_trade_recording(tmp_path: Path) -> None:
    body = recording("kraken/Trades_XBTUSDT_1000trades_2025-11-10_nautilus.json")
    source = _source(Kraken, body)
    product = Product("BTC-USDT", "XBTUSDT", "online", True)  # type: ignore[arg-type]
    assert isinstance(source, Kraken)
    page = source.fetch_after(product, "1762795433000000000")
    assert page.next_cursor == "1762820035982277754"  # `last`, passed on unchanged (ns, a string)
    assert page.dense_ids and len(page.trades) == 1000
    rows = _unify(tmp_path, source, product, page.trades, None)
    golden = [
        # ["105433.60000", "0.00027625", 1762795433.9717445, "b", "l", "", 10218208]
        # - the pair is XBTUSDT: wsname XBT/USDT, XBT is Kraken's code for BTC -> "BTC-USDT";
        # - "b" is the TAKER's side (Kraken: "buy/sell"; ccxt maps b -> buy without inversion);
        # - 1762795433.9717445 s = 2025-11-10 17:23:53.9717445 UTC, truncated to µs: .971744;
        # - trade_id 10218208, the 7th element.
        _row("kraken", "BTC-USDT", "10218208", "trade", "buy", 105433.6, 0.00027625,
             "2025-11-10T17:23:53.971744"),
        # ["105383.70000", "0.00007235", 1762795483.306824, "s", "l", "", 10218212]: the first sell.
        _row("kraken", "BTC-USDT", "10218212", "trade", "sell", 105383.7, 0.00007235,
             "2025-11-10T17:24:43.306824"),
        # ["105899.40000", "0.00009443", 1762820035.9822779, "s", "m", "", 10219207]: the last row; its
        # time in ns is `last` (1762820035982277754) -> 2025-11-11 00:13:55.982277 UTC.
        _row("kraken", "BTC-USDT", "10219207", "trade", "sell", 105899.4, 0.00009443,
             "2025-11-11T00:13:55.982277"),
    ]
    rows_raw = body["result"]["XBTUSDT"]
    oracle = [_row("kraken", "BTC-USDT", str(r[6]), "trade", {"b": "buy", "s": "sell"}[r[3]], float(r[0]),
                   float(r[1]), from_us(int(Decimal(str(r[2])) * 1_000_000)).replace(tzinfo=None)
                   .isoformat()) for r in rows_raw]
    _check(rows, golden, oracle)
    assert [int(r["trade_id"]) for r in rows] == list(range(10218208, 10219208))  # dense, no gap


def test_kraken_pairs_recording_normalizes_from_wsname() -> None:
    body = recording("kraken/AssetPairs_all_2021-04-17_cryptofeed.json")
    products = _source(Kraken, body).list_products()
    pairs = body["result"]
    dark = [k for k in pairs if k.endswith(".d")]
    # Dark pools are skipped; so is ETH2.S/ETH: a dot in an asset code cannot become a
    # path-safe BASE-QUOTE symbol ([A-Z0-9]+-[A-Z0-9]+), so it can never be ingested.
    assert len(dark) == 11 and len(products) == len(pairs) - len(dark) - 1
    assert "ETH2.SETH" not in {p.native_id for p in products}
    by_native = {p.native_id: p.symbol for p in products}
    assert by_native["XBTUSD"] == "BTC-USD"  # key XXBTZUSD, altname XBTUSD, wsname XBT/USD
    assert by_native["XDGUSD"] == "DOGE-USD"  # XDG is Kraken's code for DOGE
    assert by_native["ETHUSDT"] == "ETH-USDT"
    assert all(p.symbol.count("-") == 1 for p in products)


def test_kraken_current_pair_recording(tmp_path: Path) -> None:
    body = recording("kraken/AssetPairs_XBTUSDT_nautilus.json")
    (product,) = _source(Kraken, body).list_products()
    assert (product.symbol, product.native_id, product.status, product.tradable) == \
        ("BTC-USDT", "XBTUSDT", "online", True)



# -- Bitfinex --------------------------------------------------------------------------------


def test_bitfinex_trade_recording(tmp_path: Path) -> None:
    body = recording("bitfinex/trades_tBTCUST_limit1_2024-03-13_ccxt-static.json")
    source = _source(Bitfinex, body)
    assert isinstance(source, Bitfinex)
    product = Product("BTC-USDT", "tBTCUST", "online", True)  # type: ignore[arg-type]
    page = source.fetch_after(product, "1710327651000")
    assert page.next_cursor == "1710327651446"  # the next page starts AT the last trade's ms
    assert not page.dense_ids  # venue-wide ids: no gap detection
    rows = _unify(tmp_path, source, product, page.trades, "ms")
    golden = [
        # [1560452102, 1710327651446, 0.00019983, 73218]
        # - tBTCUST: UST is Bitfinex's code for Tether -> "BTC-USDT";
        # - AMOUNT +0.00019983 > 0: the TAKER bought (ccxt parses it as side "buy"), quantity
        #   is its absolute value;
        # - MTS 1710327651446 ms = 2024-03-13 11:00:51.446 UTC;
        # - PRICE 73218 (a JSON integer) is the price.
        _row("bitfinex", "BTC-USDT", "1560452102", "trade", "buy", 73218.0, 0.00019983,
             "2024-03-13T11:00:51.446"),
    ]
    oracle = [_row("bitfinex", "BTC-USDT", str(r[0]), "trade", "buy" if r[2] > 0 else "sell", float(r[3]),
                   abs(float(r[2])), from_us(r[1] * 1000).replace(tzinfo=None).isoformat()) for r in body]
    _check(rows, golden, oracle)


def test_bitfinex_sold_amounts_map_to_sell_and_their_absolute_value(tmp_path: Path) -> None:
    # Not a recording: the recorded row is a buy. The docs' rule (AMOUNT < 0: the taker sold)
    # on the same row with its sign flipped, in scientific notation as JSON allows.
    body = [[1560452103, 1710327651447, -1.9983e-4, 73217.5]]
    source = _source(Bitfinex, body)
    product = Product("BTC-USDT", "tBTCUST", "online", True)  # type: ignore[arg-type]
    page = source.fetch_after(product, "1710327651000")  # type: ignore[attr-defined]
    (row,) = _unify(tmp_path, source, product, page.trades, "ms")
    assert (row["side"], row["quantity"], row["price"]) == ("sell", 0.00019983, 73217.5)


def test_bitfinex_pairs_recording_normalizes_both_forms() -> None:
    pairs = recording("bitfinex/conf_pub-list-pair-exchange_2021-04-17_cryptofeed.json")
    codes = [[["UST", "USDt"], ["UDC", "USDC"], ["AAA", "TESTAAA"], ["BBB", "TESTBBB"]]]
    products = _source(Bitfinex, None, by_path={"/v2/conf/pub:list:pair:exchange": pairs,
                                                "/v2/conf/pub:map:currency:sym": codes}).list_products()
    by_native = {p.native_id: p.symbol for p in products}
    assert by_native["tBTCUSD"] == "BTC-USD"
    assert by_native["tBTCUST"] == "BTC-USDT"  # UST is Tether on Bitfinex
    assert by_native["tAAVE:USD"] == "AAVE-USD"  # a code longer than three letters: BASE:QUOTE
    assert by_native["tBTC:CNHT"] == "BTC-CNHT"
    assert "tAAABBB" not in by_native  # test pairs are skipped
    assert not [n for n in by_native if "TEST" in n]
    assert len(products) == len(pairs[0]) - 3  # AAABBB, TESTBTC:TESTUSD, TESTBTC:TESTUSDT


def test_bitfinex_code_map_recording_is_applied() -> None:
    codes = recording("bitfinex/conf_pub-map-currency-sym_2020-09-18-or-earlier_oracle-suite.json")
    pairs = [["BTCUST", "DSHUSD", "IOTBTC", "AAABBB"]]
    products = _source(Bitfinex, None, by_path={"/v2/conf/pub:list:pair:exchange": pairs,
                                                "/v2/conf/pub:map:currency:sym": codes}).list_products()
    assert sorted(p.symbol for p in products) == ["BTC-USDT", "DASH-USD", "IOTA-BTC"]


# -- OKX -------------------------------------------------------------------------------------


def _okx_oracle(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_row("okx", r["instId"], r["tradeId"], "trade", r["side"], float(r["px"]), float(r["sz"]),
                 from_us(int(r["ts"]) * 1000).replace(tzinfo=None).isoformat())
            for r in sorted(records, key=lambda r: int(r["tradeId"]))]


def test_okx_history_page_recording(tmp_path: Path) -> None:
    body = recording("okx/trades_BTC-USDT_2025-05-12_nautilus.json")
    source = _source(Okx, body)
    assert isinstance(source, Okx)
    product = Product("BTC-USDT", "BTC-USDT", "live", True)  # type: ignore[arg-type]
    page = source.page_below(product, 734864334, 100)
    assert [t.trade_id for t in page.trades] == [734864333, 734864332]  # newest first, as sent
    rows = _unify(tmp_path, source, product, sorted(page.trades, key=lambda t: t.trade_id), None)
    golden = [
        # {"instId": "BTC-USDT", "side": "buy", "sz": "0.0000125", "px": "102537.9",
        #  "tradeId": "734864332", "ts": "1747087161666"}
        # - side is the TAKER's side (OKX docs; nautilus maps it straight to the aggressor);
        # - ts 1747087161666 ms = 1,747,087,161 s = 2025-05-12 21:59:21 UTC, + .666;
        # - sz "0.0000125" exactly.
        _row("okx", "BTC-USDT", "734864332", "trade", "buy", 102537.9, 0.0000125,
             "2025-05-12T21:59:21.666"),
        # the newer one: a taker sell at 21:59:23.557
        _row("okx", "BTC-USDT", "734864333", "trade", "sell", 102537.9, 0.00013669,
             "2025-05-12T21:59:23.557"),
    ]
    _check(rows, golden, _okx_oracle(body["data"]))


def test_okx_trade_recording(tmp_path: Path) -> None:
    body = recording("okx/trades_BTC-USDT_limit1_2024-03-13_ccxt-static.json")
    source = _source(Okx, body)
    product = Product("BTC-USDT", "BTC-USDT", "live", True)  # type: ignore[arg-type]
    head = source.newest(product)  # type: ignore[attr-defined]
    assert (head.trade_id, head.time_us) == (497859870, 1710327658374000)
    page = source.page_below(product, None, 1)  # type: ignore[attr-defined]
    rows = _unify(tmp_path, source, product, page.trades, None)
    # "side": "sell" (taker), "px": "73239.3", "sz": "0.0009478", "ts": "1710327658374" = 11:00:58.374
    golden = [_row("okx", "BTC-USDT", "497859870", "trade", "sell", 73239.3, 0.0009478,
                   "2024-03-13T11:00:58.374")]
    _check(rows, golden, _okx_oracle(body["data"]))


def test_okx_instruments_recording_normalizes_from_base_and_quote() -> None:
    body = recording("okx/instruments_SPOT_2022-05-13_cryptofeed.json")
    products = _source(Okx, body).list_products()
    assert len(products) == len(body["data"]) == 513
    by_native = {p.native_id: p for p in products}
    assert by_native["BTC-USDT"].symbol == "BTC-USDT" and by_native["BTC-USDT"].tradable
    assert all(p.symbol == f"{i['baseCcy']}-{i['quoteCcy']}".upper()
               for p, i in zip(products, body["data"], strict=True))


# -- Bybit -----------------------------------------------------------------------------------


def test_bybit_archive_recording(tmp_path: Path) -> None:
    """A whole real daily file: inspected as ingest does, mapped as the transform does."""
    import gzip
    from datetime import date

    from schemahub.ingest import archived
    from schemahub.sources.archive import Fetched, Period, inspect
    from schemahub.sources.bybit_archive import BybitArchive
    from schemahub.transform import archives
    from tests.helpers import SHARED_FIXTURES

    name = "bybit/spot-archive-trades_UNIUSDC_2025-05-17_rt-data.csv"
    if not (SHARED_FIXTURES / name).exists():
        pytest.skip(f"recording {name} is read from ../shared/fixtures (CC BY-NC), which is absent here")
    text = (SHARED_FIXTURES / name).read_bytes()
    path = tmp_path / "UNIUSDC_2025-05-17.csv.gz"
    path.write_bytes(gzip.compress(text, mtime=0))
    archive = BybitArchive(None)  # type: ignore[arg-type]  # (no download here)
    period = Period(date(2025, 5, 17), "daily")
    layout = archive.layouts["trades"]
    base = archive.id_base(period)
    facts = inspect(path, path.name, layout, period, base)
    # 219 rows numbered 1..219 without a gap, ms times inside the UTC day, a header with `rpi`
    assert (facts.rows, facts.header, facts.time_unit, facts.missing) == (219, True, "ms", [])
    assert (facts.first_id, facts.last_id) == (20250517000000001, 20250517000000219)
    fetched = Fetched(period, "trades", path.name, "https://public.bybit.com/spot/UNIUSDC/" + path.name, path,
                      "0" * 64, path.stat().st_size, FETCHED)
    assert facts.first_time_us is not None and facts.last_time_us is not None
    segment = next(archived.segments(facts, base, 20250517000000219))
    product = Product("UNI-USDC", "UNIUSDC", "Trading", True)  # type: ignore[arg-type]
    times = {20250517000000001: facts.first_time_us, 20250517000000219: facts.last_time_us}
    header = archived.coverage_header(
        fetched, facts, "raw/x", segment, exchange="bybit", product=product, endpoint="trades",
        mapping="trades", times=times, writer=files.WriterMeta(run_id="t", owner="t", lease_token=1),
        id_base=base, named_columns=True)
    raw_file = RawFile(0, "raw/x", str(path), "bybit", "UNI-USDC", "trades", segment.after_id,
                       segment.through_id, FETCHED.isoformat(), segment.trades, "ms", header)
    mapping = packaged("bybit", "trades")
    rows = [row for part in archives.tables(path, header, mapping)
            for row in engine.apply(mapping, archives.with_context(part, raw_file)).table.to_pylist()]
    golden = [
        # "1,1747442146179,6.016,0.76,sell,0": row 1 of 2025-05-17 -> id 20250517 x 10^9 + 1, derived;
        # 1747442146179 ms = 2025-05-17 00:35:46.179 UTC; `sell` is the taker's side.
        _row("bybit", "UNI-USDC", "20250517000000001", "derived", "sell", 6.016, 0.76,
             "2025-05-17T00:35:46.179"),
        # "2,1747442146179,6,0.65,sell,0": same millisecond, price written without decimals
        _row("bybit", "UNI-USDC", "20250517000000002", "derived", "sell", 6.0, 0.65,
             "2025-05-17T00:35:46.179"),
    ]
    lines = text.decode().splitlines()[1:]
    oracle = [_row("bybit", "UNI-USDC", str(20250517 * 10**9 + int(c[0])), "derived", c[4], float(c[2]),
                   float(c[3]), from_us(int(c[1]) * 1000).replace(tzinfo=None).isoformat())
              for c in (line.split(",") for line in lines)]
    _check(sorted(rows, key=lambda r: int(r["trade_id"])), golden, oracle)
    assert len(rows) == 219


def test_bybit_instruments_recording_normalizes_from_base_and_quote_coins() -> None:
    body = recording("bybit/instruments-info_spot_BTCUSDT-ETHUSDT_2023-09-14_nautilus-trimmed.json")
    products = _source(Bybit, body).list_products()
    assert [(p.symbol, p.native_id, p.status, p.tradable) for p in products] == [
        ("BTC-USDT", "BTCUSDT", "Trading", True), ("ETH-USDT", "ETHUSDT", "Trading", True)]
