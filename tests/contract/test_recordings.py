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
from schemahub.sources.coinbase import Coinbase
from schemahub.sources.kraken import Kraken
from schemahub.timeutil import from_us
from schemahub.transform import engine
from schemahub.transform.mapping import packaged
from schemahub.transform.reader import RawFile, RawReader
from tests.helpers import recording

FETCHED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _source(cls: type[TradeSource], body: Any, endpoint: str | None = None) -> TradeSource:
    def handler(request: httpx.Request) -> httpx.Response:
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

