"""The simulators serve what the real exchanges serve: shapes checked against the recordings.

Every response the connectors parse is compared with a real recorded one - same keys in
the same order, same JSON types (``assert_shaped_like``). Error answers, which have no
recording here, are checked against the documented formats
(../shared/reference/exchange-apis.md, quoted next to each check).
"""

from __future__ import annotations

from typing import Any

import httpx

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
