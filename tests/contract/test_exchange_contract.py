"""The contract every registered exchange passes, against its simulator over real HTTP.

A new exchange is covered by adding it to the registry: these tests are parametrized over
``list_exchanges()`` and the registry test fails until the connector has a mapping,
recordings, recording tests and a simulator.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemahub.ingest.bans import active_ban, ban_key
from schemahub.ingest.report import Status
from schemahub.simulator.catalog import default_products
from schemahub.simulator.server import Faults, ManualClock
from schemahub.sources.registry import list_exchanges, source_class, spec
from schemahub.transform.mapping import packaged
from tests.conftest import SimFactory
from tests.contract import test_recordings
from tests.helpers import (
    PRODUCTS_FOR,
    TRADED,
    assert_lake_matches_truth,
    assert_table_matches_truth,
    checkpoint,
    ingest,
    transform,
)
from tests.lakes import LakeRef

EXCHANGE_NAMES = list_exchanges()
FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_every_registered_exchange_is_complete(exchange: str) -> None:
    cls = source_class(exchange)
    assert cls.__module__ == f"schemahub.sources.{exchange}", "one connector module, named after the exchange"
    for endpoint in cls.endpoints:
        mapping = packaged(exchange, endpoint)  # validates the YAML
        assert (mapping.exchange, mapping.endpoint) == (exchange, endpoint)
    recorded = FIXTURES / exchange
    assert (recorded / "SOURCES.md").exists(), f"{recorded}/SOURCES.md documents the recordings"
    assert any(name.startswith(f"test_{exchange}_") for name in dir(test_recordings)), \
        f"tests/contract/test_recordings.py has no recording test for {exchange}"
    assert default_products(exchange), f"no simulator for {exchange}"
    assert exchange in PRODUCTS_FOR and TRADED[exchange], f"no contract test products for {exchange}"
    # what we run never exceeds what the exchange documents
    assert cls.client_limit.rate <= cls.rate_limit.rate and cls.client_limit.burst <= cls.rate_limit.burst


_S3_ELSEWHERE = {"binance": "tests/integration/test_archive.py (REST seams and archives)",
                 "okx": "tests/integration/test_okx_archive.py (REST and archives)",
                 "bybit": "tests/integration/test_bybit_archive.py"}
"""Venues whose S3 path another file's ground-truth tests already take (the S3 lake is the
same code for every venue; these keep its cost in the suite down)."""


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_full_then_incremental_backfill_equal_ground_truth(lake: LakeRef, make_sim: SimFactory,
                                                          exchange: str) -> None:
    if lake.kind == "s3" and exchange in _S3_ELSEWHERE:
        pytest.skip(f"{exchange} on an S3 lake: {_S3_ELSEWHERE[exchange]} runs on both lakes")
    sim = make_sim(exchange=exchange)
    products = TRADED[exchange]
    first = ingest(lake, sim, products)
    assert first.ok, first.to_dict()
    for symbol in products:
        assert_lake_matches_truth(lake, sim, symbol)
    transform(lake)
    assert_table_matches_truth(lake, sim, products)
    before = {s: checkpoint(lake, s, exchange).last_trade_id for s in products}

    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(sim.api.incremental_step_s)  # new trades: fifteen minutes (a day's file for Bybit)
    second = ingest(lake, sim, products)
    assert second.ok, second.to_dict()
    for item in second.products:
        after = checkpoint(lake, item.symbol, exchange).last_trade_id
        assert after > before[item.symbol]
        assert item.first_trade_id is not None and item.first_trade_id > before[item.symbol]  # only new
    for symbol in products:
        assert_lake_matches_truth(lake, sim, symbol)
    transform(lake)
    assert_table_matches_truth(lake, sim, products)


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_rate_limit_answers_are_honoured_and_converge(tmp_path: Path, make_sim: SimFactory,
                                                      exchange: str) -> None:
    _skip_archive_only(exchange)
    throttle = spec(exchange).throttle_test  # the client is told to go ~3x faster than allowed
    sim = make_sim(exchange=exchange, faults=Faults(rate_limit=True, **throttle.faults))
    report = ingest(tmp_path, sim, TRADED[exchange], rate=throttle.client_rate,
                    SCHEMAHUB_RETRY_MAX_ATTEMPTS="30")
    assert report.ok, report.to_dict()
    for symbol in TRADED[exchange]:
        assert_lake_matches_truth(tmp_path, sim, symbol)
    stats = sim.stats()
    assert stats.get("429", 0) > 0, f"the simulator never refused {exchange}: {stats}"
    assert stats.get("418", 0) == 0, "the client kept going after 429s and got banned"
    assert sum(p.stats.snapshot().rate_limited for p in report.products) > 0


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_server_errors_and_broken_connections_converge(lake: LakeRef, make_sim: SimFactory,
                                                      exchange: str) -> None:
    faults = Faults(rate_limit=False, error_rate=0.08, truncate_rate=0.05, reset_rate=0.05, hang_rate=0.02,
                    hang_s=5.0)
    sim = make_sim(exchange=exchange, faults=faults)
    report = ingest(lake, sim, TRADED[exchange], SCHEMAHUB_HTTP_READ_TIMEOUT="0.4",
                    SCHEMAHUB_RETRY_MAX_ATTEMPTS="25", SCHEMAHUB_BREAKER_THRESHOLD="30")
    assert report.ok, report.to_dict()
    for symbol in TRADED[exchange]:
        assert_lake_matches_truth(lake, sim, symbol)
    assert sim.stats().get("error", 0) > 0 and sum(p.stats.snapshot().retries for p in report.products) > 0


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_a_ban_stops_the_exchange_at_once(tmp_path: Path, make_sim: SimFactory, exchange: str) -> None:
    _skip_archive_only(exchange)
    bans = spec(exchange).ban_test
    if bans is None:
        pytest.skip(f"{exchange} does not ban IPs (it throttles: see the rate-limit test)")
    faults = Faults(rate_limit=True, **bans)
    sim = make_sim(exchange=exchange, faults=faults)
    started = time.monotonic()
    report = ingest(tmp_path, sim, TRADED[exchange], rate=1000.0, SCHEMAHUB_RETRY_MAX_ATTEMPTS="30")
    assert time.monotonic() - started < 10
    assert not report.ok
    for item in report.products:
        assert item.status is Status.FAILED and item.error is not None
        assert "banned" in item.error
    stats = sim.stats()
    # Requests already on the wire may meet the ban too, but nothing is sent after it: no
    # 418 is retried (a retry would extend the ban), and at most the requests in flight when
    # the first 418 came back (3 products x 4 chunks) see one.
    in_flight = 3 * 4
    assert 1 <= stats["418"] <= in_flight, stats
    assert sum(p.stats.snapshot().retries for p in report.products) == 0

    # The ban is remembered in the lake: the next run (the next schedule, another host)
    # does not ask the exchange at all until the ban ends, and says why.
    storage = LakeRef(str(tmp_path)).storage()
    ban = active_ban(storage, exchange, datetime.now(UTC))
    assert ban is not None
    assert 290 < (ban.until - datetime.now(UTC)).total_seconds() <= faults.ban_s
    again = ingest(tmp_path, sim, TRADED[exchange], rate=1000.0)
    assert not again.ok and again.products == [] and again.http.banned == 1
    assert again.error is not None and f"{exchange} banned this IP until" in again.error
    assert sim.stats()["requests"] == stats["requests"]
    storage.delete(ban_key(exchange))  # an operator who knows better: asks, is refused again
    refused = ingest(tmp_path, sim, TRADED[exchange], rate=1000.0)
    assert refused.error is not None and "418" in refused.error
    assert sim.stats()["requests"] == stats["requests"] + 1
    assert active_ban(storage, exchange, datetime.now(UTC)) is not None


def _skip_archive_only(exchange: str) -> None:
    if source_class(exchange).paging == "archive":
        pytest.skip(f"{exchange}'s trades come from its archive host, which documents no limit; its API's "
                    "ban answer is tested in test_simulator_shapes and test_recordings")
