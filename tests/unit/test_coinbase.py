"""The Coinbase connector over the real recordings, and the simulator's shapes against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemahub.errors import MalformedResponse
from schemahub.http.client import ExchangeClient
from schemahub.ingest.connect import client_config
from schemahub.settings import Settings
from schemahub.simulator.server import Simulator
from schemahub.sources.base import Product
from schemahub.sources.coinbase import Coinbase
from schemahub.timeutil import iso_to_us
from tests.helpers import assert_shaped_like, json_type

FIXTURES = Path(__file__).parent.parent / "fixtures" / "coinbase"
PRODUCTS = json.loads((FIXTURES / "products_all_2021-04-17_cryptofeed.json").read_text())
TRADES = json.loads((FIXTURES / "trades_BTC-USDT_limit1_2024-03-13_ccxt-static.json").read_text())
BTC_USDT = Product("BTC-USDT", "BTC-USDT", "online", True)  # type: ignore[arg-type]


def _source(handler: Any, cls: type[Coinbase] = Coinbase) -> Coinbase:
    env = {"SCHEMAHUB_RETRY_BASE": "0", "SCHEMAHUB_RETRY_MAX_ATTEMPTS": "2"}
    config = client_config(Settings.load("lake", env=env), Coinbase, rate=1000, burst=100)
    return cls(ExchangeClient("coinbase", config, transport=httpx.MockTransport(handler)))


class _SmallPages(Coinbase):
    page_limit = 300


def _serve(body: Any, headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body, headers=headers or {})

    return handler


def test_recorded_product_list_parses() -> None:
    products = _source(_serve(PRODUCTS)).list_products()
    assert len(products) == len(PRODUCTS) == 162
    by_symbol: dict[str, Product] = {p.symbol: p for p in products}
    assert by_symbol["BTC-GBP"].native_id == "BTC-GBP" and by_symbol["BTC-GBP"].tradable
    assert all(p.status == "online" for p in products)  # every 2021 row is online


def test_recorded_trade_with_a_string_id_parses_exactly() -> None:
    assert isinstance(TRADES[0]["trade_id"], str)  # the recording sends the id as a string
    source = _source(_serve(TRADES, {"cb-before": "18502034", "cb-after": "18502034"}))
    newest = source.newest(BTC_USDT)
    assert newest is not None
    assert newest.trade_id == 18502034
    assert newest.time_us == 1710327617710679  # 2024-03-13T11:00:17.710679Z, to the microsecond
    fetched = source.fetch_range(BTC_USDT, 18502033, 18502034)
    assert [t.trade_id for t in fetched.trades] == [18502034]
    assert fetched.trades[0].record == TRADES[0]  # verbatim: maker side "sell" stays "sell"
    assert fetched.requests[0].headers == {"cb-before": "18502034", "cb-after": "18502034",
                                           "content-type": "application/json"}


@pytest.mark.parametrize(("text", "us"), [
    ("2024-03-13T11:00:17.710679Z", 1710327617710679),
    ("2024-03-13T11:00:17.71068Z", 1710327617710680),
    ("2024-03-13T11:00:17.7106Z", 1710327617710600),
    ("2024-03-13T11:00:17.710Z", 1710327617710000),
    ("2024-03-13T11:00:17.71Z", 1710327617710000),
    ("2024-03-13T11:00:17.7Z", 1710327617700000),
    ("2024-03-13T11:00:17Z", 1710327617000000),
    ("2024-03-13T11:00:17.000001+00:00", 1710327617000001),
])
def test_iso_times_with_0_to_6_fractional_digits(text: str, us: int) -> None:
    assert iso_to_us(text) == us


def test_range_fetch_walks_back_page_by_page_until_the_range_is_covered() -> None:
    # Ids 1..2500 with 101..150 skipped, pages of 300: the chunk (100, 1100] takes four pages.
    existing = [i for i in range(1, 2501) if not 101 <= i <= 150]
    requests: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        requests.append(params)
        below = int(params["after"])
        page = [i for i in existing if i < below][-int(params["limit"]):][::-1]
        return httpx.Response(200, json=[{"trade_id": i, "side": "buy", "size": "1", "price": "1",
                                          "time": "2024-01-01T00:00:00Z"} for i in page])

    source = _source(handler, _SmallPages)
    fetched = source.fetch_range(BTC_USDT, 100, 1100)
    ids = [t.trade_id for t in fetched.trades]
    assert ids == [i for i in existing if 100 < i <= 1100]
    assert fetched.missing_ranges() == [(101, 150)]
    assert [r["after"] for r in requests] == ["1101", "801", "501", "201"]


@pytest.mark.parametrize(("body", "message"), [
    ({"message": "not a list"}, "expected a JSON array"),
    ([{"trade_id": "12x", "time": "2024-01-01T00:00:00Z"}], "bad trade_id"),
    ([{"trade_id": 5, "time": "2024-01-01T00:00:00Z"}], "not below the cursor"),
    ([{"trade_id": 1, "time": 17}], "no time string"),
    ([{"trade_id": 1, "time": "yesterday"}], "unreadable time"),
    ([{"trade_id": True, "time": "2024-01-01T00:00:00Z"}], "bad trade_id"),
])
def test_bodies_that_break_the_contract_are_malformed(body: Any, message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        _source(_serve(body)).fetch_range(BTC_USDT, 0, 4)


def test_simulator_serves_the_recorded_shapes(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as client:
        products = client.get("/products").json()
        trades = client.get("/products/BTC-USD/trades", params={"limit": 5}).json()
        string_ids = client.get("/products/BTC-USDT/trades", params={"limit": 1})
    recorded = PRODUCTS[0]
    for product in products:
        for key, value in recorded.items():
            assert key in product, f"simulated product lacks {key}"
            assert json_type(product[key]) == json_type(value), key
    assert_shaped_like(string_ids.json(), TRADES)  # same fields, same order, same JSON types
    for trade in trades:
        assert list(trade) == list(TRADES[0])
        for key in ("side", "size", "price", "time"):
            assert isinstance(trade[key], str)
        assert trade["side"] in ("buy", "sell")
        assert isinstance(trade["trade_id"], int)
    assert [t["trade_id"] for t in trades] == sorted((t["trade_id"] for t in trades), reverse=True)
    assert isinstance(string_ids.json()[0]["trade_id"], str)
    newest_id = string_ids.json()[0]["trade_id"]
    assert string_ids.headers["cb-before"] == string_ids.headers["cb-after"] == newest_id


def test_simulator_cursor_semantics(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as client:
        newest = client.get("/products/BTC-USD/trades", params={"limit": 3})
        head = newest.json()
        older = client.get("/products/BTC-USD/trades",
                           params={"limit": 3, "after": newest.headers["cb-after"]})
        newer = client.get("/products/BTC-USD/trades",
                           params={"limit": 2, "before": older.headers["cb-after"]})
        too_big = client.get("/products/BTC-USD/trades", params={"limit": 1001})
        unknown = client.get("/products/NOPE-USD/trades")
    after = int(newest.headers["cb-after"])
    assert all(t["trade_id"] < after for t in older.json())
    assert int(newest.headers["cb-before"]) == head[0]["trade_id"]
    assert [t["trade_id"] for t in newer.json()] == sorted(
        (t["trade_id"] for t in newer.json()), reverse=True)
    assert all(t["trade_id"] > int(older.headers["cb-after"]) for t in newer.json())
    assert too_big.status_code == 400 and "message" in too_big.json()
    assert unknown.status_code == 404 and unknown.json() == {"message": "NotFound"}


def test_simulator_rate_limit_answers_429_with_a_message(make_sim: Any) -> None:
    from schemahub.simulator.server import Faults

    limited = make_sim(faults=Faults(rate_limit=True, rate=1.0, burst=3))
    with httpx.Client(base_url=limited.url) as client:
        codes = [client.get("/products").status_code for _ in range(5)]
        body = client.get("/products").json()
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    assert body == {"message": "Public rate limit exceeded"}
