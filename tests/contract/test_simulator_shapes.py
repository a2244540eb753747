"""The simulators serve what the real exchanges serve: shapes checked against the recordings.

Every response the connectors parse is compared with a real recorded one - same keys in
the same order, same JSON types (``assert_shaped_like``). Error answers, which have no
recording here, are checked against the documented formats
(../shared/reference/exchange-apis.md, quoted next to each check).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from schemahub.simulator.server import Faults
from tests.conftest import SimFactory
from tests.helpers import assert_shaped_like, recording

NAUTILUS = "BTCUSDT-inferred_10items_2021-10-22_nautilus.json"


def _get(url: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(url + path, params=params, timeout=10)


def test_binance_simulator_matches_the_recordings(make_sim: SimFactory) -> None:
    sim = make_sim(exchange="binance")
    info = _get(sim.url, "/api/v3/exchangeInfo")
    # Metadata carries more fields than we read; the simulator serves a subset, each shaped as recorded.
    assert_shaped_like(info.json(), recording("binance/exchangeInfo_all_2021-10-12_cryptofeed.json"),
                       same_keys=False)
    for path, name in (("/api/v3/historicalTrades", f"historicalTrades_{NAUTILUS}"),
                       ("/api/v3/trades", f"trades_{NAUTILUS}"),
                       ("/api/v3/aggTrades", f"aggTrades_{NAUTILUS}")):
        page = _get(sim.url, path, symbol="BTCUSDT", limit=10)
        assert page.status_code == 200
        assert_shaped_like(page.json(), recording(f"binance/{name}"))
        assert int(page.headers["x-mbx-used-weight-1m"]) > 0  # every answer reports the used weight
        assert len(str(page.json()[0]["T" if "aggTrades" in path else "time"])) == 13  # ms by default
    micros = httpx.get(sim.url + "/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "limit": 1},
                       headers={"X-MBX-TIME-UNIT": "MICROSECOND"})
    assert len(str(micros.json()[0]["time"])) == 16


def test_binance_simulator_refuses_and_bans_as_documented(make_sim: SimFactory) -> None:
    # "429 = a request rate limit was broken ... 418 = the IP was auto-banned for continuing
    # after 429s ... Both carry Retry-After (seconds)"; "Error body: {code, msg}, -1003".
    sim = make_sim(exchange="binance", faults=Faults(rate_limit=True, weight_limit=50, ban_after=-1,
                                                      ban_s=120))
    first = _get(sim.url, "/api/v3/historicalTrades", symbol="BTCUSDT", limit=1)  # weight 25
    second = _get(sim.url, "/api/v3/historicalTrades", symbol="BTCUSDT", limit=1)
    assert first.status_code == second.status_code == 200
    assert second.headers["x-mbx-used-weight-1m"] == "50"
    banned = _get(sim.url, "/api/v3/historicalTrades", symbol="BTCUSDT", limit=1)
    assert banned.status_code == 418 and 0 < int(banned.headers["retry-after"]) <= 120
    assert banned.json()["code"] == -1003 and "banned until" in banned.json()["msg"]

    sim = make_sim(exchange="binance", faults=Faults(rate_limit=True, weight_limit=20))
    refused = _get(sim.url, "/api/v3/historicalTrades", symbol="BTCUSDT", limit=1)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["code"] == -1003
    unknown = _get(sim.url, "/api/v3/aggTrades", symbol="NOPEUSDT")
    assert unknown.status_code == 400 and unknown.json()["code"] == -1121  # "-1121 = invalid symbol"


def test_kraken_simulator_matches_the_recordings(make_sim: SimFactory) -> None:
    sim = make_sim(exchange="kraken")
    pairs = _get(sim.url, "/0/public/AssetPairs").json()
    recorded_pairs = recording("kraken/AssetPairs_all_2021-04-17_cryptofeed.json")
    assert list(pairs) == list(recorded_pairs) == ["error", "result"]
    current = recording("kraken/AssetPairs_XBTUSDT_nautilus.json")["result"]["XBTUSDT"]
    for key, entry in pairs["result"].items():  # keyed by pair: compare like with like
        then = recorded_pairs["result"]["XXBTZUSD.d" if key.endswith(".d") else "XXBTZUSD"]
        # every field of 2021 is still served, typed alike (the API has grown since) ...
        assert_shaped_like(then, entry, f"$.result.{key} (2021 fields)", same_keys=False)
        if not key.endswith(".d"):  # ... and a pair looks exactly like today's recording
            assert_shaped_like(entry, current, f"$.result.{key}")
    assert any(key.endswith(".d") for key in pairs["result"])  # dark pools are listed, to be skipped

    recorded = recording("kraken/Trades_XBTUSDT_1000trades_2025-11-10_nautilus.json")
    page = _get(sim.url, "/0/public/Trades", pair="XBTUSDT", count=1000, since=0)
    assert page.status_code == 200
    body = page.json()
    assert list(body) == list(recorded) == ["error", "result"]
    assert list(body["result"]) == list(recorded["result"]) == ["XBTUSDT", "last"]
    assert_shaped_like(body["result"]["XBTUSDT"], recorded["result"]["XBTUSDT"])
    assert isinstance(body["result"]["last"], str) and len(body["result"]["last"]) == 19  # ns, as text
    # `last` is the last row's time in ns: the recording's 1762820035.9822779 s -> "1762820035982277754"
    last_row_s = body["result"]["XBTUSDT"][-1][2]
    assert abs(int(body["result"]["last"]) / 1e9 - last_row_s) < 1e-6


def test_kraken_simulator_errors_arrive_in_the_error_array(make_sim: SimFactory) -> None:
    # "every response carries an error array ... EGeneral:Too many requests ... (status 200 or 429)";
    # the simulator answers 200, the harder case for a client that only reads the status.
    sim = make_sim(exchange="kraken", faults=Faults(rate_limit=True, rate=0.001, burst=1))
    assert _get(sim.url, "/0/public/Trades", pair="XBTUSDT").json()["error"] == []
    throttled = _get(sim.url, "/0/public/Trades", pair="XBTUSDT")
    assert throttled.status_code == 200 and throttled.json() == {"error": ["EGeneral:Too many requests"],
                                                                   "result": {}}
    sim = make_sim(exchange="kraken")
    unknown = _get(sim.url, "/0/public/Trades", pair="NOPEUSD")
    assert unknown.status_code == 200 and unknown.json()["error"] == ["EQuery:Unknown asset pair"]


def test_bitfinex_simulator_matches_the_recordings(make_sim: SimFactory) -> None:
    sim = make_sim(exchange="bitfinex")
    recorded = recording("bitfinex/trades_tBTCUST_limit1_2024-03-13_ccxt-static.json")
    newest = _get(sim.url, "/v2/trades/tBTCUST/hist", limit=1, sort=-1).json()
    assert_shaped_like(newest, recorded)  # [[ID int, MTS int, AMOUNT float, PRICE int]] ...
    page = _get(sim.url, "/v2/trades/tBTCUSD/hist", start=0, limit=10_000, sort=1).json()
    for row in page:  # ... and every row: ints for ID and MTS, numbers for AMOUNT and PRICE
        assert len(row) == 4 and all(isinstance(v, int) for v in row[:2])
        assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in row[2:]) and row[2] != 0
    times = [row[1] for row in page]
    assert times == sorted(times) and len(set(times)) < len(times)  # sort=1: oldest first; ms shared
    assert page[0][1] >= 0 and _get(sim.url, "/v2/trades/tBTCUSD/hist", start=times[-1], limit=10_000,
                                    sort=1).json()[0][1] == times[-1]  # `start` is inclusive
    pairs = _get(sim.url, "/v2/conf/pub:list:pair:exchange").json()
    assert_shaped_like(pairs, recording("bitfinex/conf_pub-list-pair-exchange_2021-04-17_cryptofeed.json"))
    assert "AAABBB" in pairs[0] and "DOGE:USD" in pairs[0]  # test pairs and the colon form, as listed
    codes = _get(sim.url, "/v2/conf/pub:map:currency:sym").json()
    assert ["UST", "USDt"] in codes[0]


def test_bitfinex_simulator_throttles_in_both_known_forms(make_sim: SimFactory) -> None:
    # ccxt#6384: HTTP 429 ["error", 11010, "ratelimit: error"]; ccxt#18600: HTTP 500
    # ["error", null, "ERR_RATE_LIMIT"].
    sim = make_sim(exchange="bitfinex", faults=Faults(rate_limit=True, rate=0.001, burst=1))
    assert _get(sim.url, "/v2/trades/tBTCUSD/hist", limit=1).status_code == 200
    answers = [_get(sim.url, "/v2/trades/tBTCUSD/hist", limit=1) for _ in range(2)]
    assert {(a.status_code, str(a.json())) for a in answers} == {
        (429, "['error', 11010, 'ratelimit: error']"), (500, "['error', None, 'ERR_RATE_LIMIT']")}
    assert _get(sim.url, "/v2/trades/tNOPE/hist").json()[0] == "error"


def test_okx_simulator_matches_the_recordings(make_sim: SimFactory) -> None:
    sim = make_sim(exchange="okx")
    recorded = recording("okx/trades_BTC-USDT_2025-05-12_nautilus.json")
    page = _get(sim.url, "/api/v5/market/history-trades", instId="BTC-USDT", type=1, limit=100).json()
    assert_shaped_like(page, recorded)  # same keys in the same order, every value a string
    ids = [int(t["tradeId"]) for t in page["data"]]
    assert len(ids) == 100 and ids == sorted(ids, reverse=True)  # newest first
    older = _get(sim.url, "/api/v5/market/history-trades", instId="BTC-USDT", type=1, limit=100,
                 after=ids[-1]).json()["data"]
    assert int(older[0]["tradeId"]) < ids[-1]  # `after` = older than the id
    instruments = _get(sim.url, "/api/v5/public/instruments", instType="SPOT").json()
    recorded_instruments = recording("okx/instruments_SPOT_2022-05-13_cryptofeed.json")
    assert_shaped_like(instruments, recorded_instruments)


def test_okx_simulator_throttles_with_code_50011(make_sim: SimFactory) -> None:
    sim = make_sim(exchange="okx", faults=Faults(rate_limit=True, rate=0.001, burst=1))
    assert _get(sim.url, "/api/v5/market/history-trades", instId="BTC-USDT").json()["code"] == "0"
    throttled = _get(sim.url, "/api/v5/market/history-trades", instId="BTC-USDT")
    assert throttled.status_code == 429 and throttled.json()["code"] == "50011"
    sim = make_sim(exchange="okx")
    unknown = _get(sim.url, "/api/v5/market/history-trades", instId="NOPE-USDT")
    assert unknown.json()["code"] == "51001"


def test_bybit_simulator_matches_the_recordings(make_sim: SimFactory) -> None:
    import gzip

    from tests.helpers import SHARED_FIXTURES

    sim = make_sim(exchange="bybit")
    instruments = _get(sim.url, "/v5/market/instruments-info", category="spot").json()
    recorded = recording("bybit/instruments-info_spot_BTCUSDT-ETHUSDT_2023-09-14_nautilus-trimmed.json")
    # (the recording's envelope is trimmed: compare the instruments, and the envelope's types)
    assert_shaped_like(instruments["result"]["list"], recorded["result"]["list"])
    assert isinstance(instruments["retCode"], int) and isinstance(instruments["time"], int)
    recent = _get(sim.url, "/v5/market/recent-trade", category="spot", symbol="BTCUSDT").json()
    assert_shaped_like(recent, recording("bybit/recent-trade_spot_BTCUSDT_testnet_2023-12-23_rbot.json"))
    # the archive: the real file's header and row shapes (LF, lowercase sides, ids from 1)
    name = "bybit/spot-archive-trades_UNIUSDC_2025-05-17_rt-data.csv"
    if not (SHARED_FIXTURES / name).exists():
        pytest.skip(f"recording {name} is read from ../shared/fixtures (CC BY-NC), which is absent here")
    real = (SHARED_FIXTURES / name).read_bytes().decode().splitlines()
    served = gzip.decompress(_get(sim.url, "/spot/BTCUSDT/BTCUSDT_2026-11-18.csv.gz").content).decode()
    lines = served.splitlines()
    assert lines[0] == real[0] == "id,timestamp,price,volume,side,rpi"
    for mine, theirs in zip(lines[1:4], real[1:4], strict=True):
        a, b = mine.split(","), theirs.split(",")
        assert len(a) == len(b) and a[0].isdigit() and len(a[1]) == len(b[1]) == 13
        assert a[4] in ("buy", "sell")
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, len(lines)))
    index = _get(sim.url, "/spot/BTCUSDT/").text
    assert 'href="BTCUSDT_2026-11-18.csv.gz"' in index


def test_bybit_simulator_bans_over_the_limit_with_403(make_sim: SimFactory) -> None:
    # Bybit's docs: over the IP limit "403 access too frequent", and a wait of 10+ minutes.
    sim = make_sim(exchange="bybit", faults=Faults(rate_limit=True, rate=0.001, burst=1))
    assert _get(sim.url, "/v5/market/instruments-info", category="spot").json()["retCode"] == 0
    banned = _get(sim.url, "/v5/market/instruments-info", category="spot")
    assert banned.status_code == 403 and banned.text == "access too frequent"
