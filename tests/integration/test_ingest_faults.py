"""Ingest converges under 429 storms, 5xx, hung requests, truncated bodies and resets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schemahub.errors import CircuitOpen, ExchangeUnavailable
from schemahub.ingest.report import Status
from schemahub.simulator.server import Faults, ManualClock
from tests.conftest import SimFactory
from tests.helpers import assert_lake_matches_truth, ingest, lake_keys
from tests.lakes import LakeRef

PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]


def test_chaos_run_still_converges_exactly(lake: LakeRef, make_sim: SimFactory) -> None:
    faults = Faults(
        rate_limit=True, rate=40.0, burst=5,  # the client below asks for 120/s: a 429 storm
        error_rate=0.08, hang_rate=0.03, hang_s=5.0, truncate_rate=0.05, reset_rate=0.05,
    )
    sim = make_sim(faults=faults)
    report = ingest(lake, sim, PRODUCTS, rate=120.0, burst=20, chunks=4,
                    SCHEMAHUB_HTTP_READ_TIMEOUT="0.4", SCHEMAHUB_RETRY_MAX_ATTEMPTS="25",
                    SCHEMAHUB_BREAKER_THRESHOLD="30")
    assert report.ok, report.to_dict()
    for symbol in PRODUCTS:
        assert_lake_matches_truth(lake, sim, symbol)
    seen = sim.stats()
    for fault in ("429", "error", "hang", "truncate", "reset"):
        assert seen.get(fault, 0) > 0, f"the simulator never injected {fault}: {seen}"
    stats = [p.stats.snapshot() for p in report.products]
    assert sum(s.rate_limited for s in stats) > 0
    assert sum(s.retries for s in stats) >= sum(seen.get(f, 0) for f in ("error", "truncate"))


def test_exchange_dying_mid_run_fails_fast_without_hammering(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = make_sim()
    ingest(lake, sim, PRODUCTS)  # a good first run, so there are checkpoints
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(3600)
    # The product list still answers; every trades request fails from now on.
    sim.set_faults(error_rate=1.0, only_paths="/trades")
    before = sim.stats()["requests"]
    started = time.monotonic()
    report = ingest(lake, sim, PRODUCTS, SCHEMAHUB_BREAKER_THRESHOLD="5")
    elapsed = time.monotonic() - started
    assert not report.ok
    for product in report.products:
        assert product.status is Status.FAILED
        assert product.error is not None and "looks down" in product.error
    # 1 product list + threshold (5) + 3 failed probes, plus what was in flight as it opened
    assert sim.stats()["requests"] - before <= 1 + 5 + 3 + 3
    assert elapsed < 10
    for symbol in PRODUCTS:
        assert_lake_matches_truth(lake, sim, symbol)  # unchanged and consistent


def test_dead_exchange_before_any_write(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(rate_limit=False, error_rate=1.0))
    report = ingest(lake, sim, ["BTC-USD"], SCHEMAHUB_BREAKER_THRESHOLD="4")
    assert report.error is not None and "looks down" in report.error
    assert [(p.symbol, p.status) for p in report.products] == [("BTC-USD", Status.FAILED)]
    assert sim.stats()["requests"] == 4 + 3  # threshold, then three failed probes
    assert lake_keys(lake, "raw/") == [] and lake_keys(lake, "state/checkpoints/") == []


def test_circuit_recovers_after_a_short_outage(tmp_path: Path, make_sim: SimFactory) -> None:
    from schemahub.http.client import ExchangeClient
    from schemahub.ingest.connect import client_config
    from schemahub.settings import Settings
    from schemahub.sources.coinbase import Coinbase
    from tests.helpers import FAST_ENV

    sim = make_sim()
    env = {**FAST_ENV, "SCHEMAHUB_COINBASE_URL": sim.url, "SCHEMAHUB_BREAKER_THRESHOLD": "3",
           "SCHEMAHUB_RETRY_MAX_ATTEMPTS": "3"}
    config = client_config(Settings.load(str(tmp_path), env=env), Coinbase, rate=1000, burst=10)
    with ExchangeClient("coinbase", config) as client:
        sim.set_faults(error_rate=1.0)
        with pytest.raises(ExchangeUnavailable):  # three attempts, then the 5xx surfaces
            client.get_json("/products")
        assert client.breaker.trips == 1 and sim.stats()["requests"] == 3
        with pytest.raises(CircuitOpen):
            client.breaker.before_call()
        sim.set_faults(error_rate=0.0)  # the exchange comes back
        response = client.get_json("/products")  # waits for the half-open probe, which succeeds
        assert isinstance(response.data, list) and response.data
        assert client.breaker.state.value == "closed"
