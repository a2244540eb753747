"""Regressions of defects found by review (issue 12, A6-A7 and B): each fails on the code before."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from schemahub.errors import (
    CircuitOpen,
    ConfigError,
    ExchangeRejected,
    ExchangeUnavailable,
    LockLost,
    MalformedResponse,
    StorageError,
)
from schemahub.http.breaker import CircuitBreaker, State
from schemahub.http.retry import RetryPolicy
from schemahub.infra.locks import Lease, LeaseKeeper, LeaseRecord
from schemahub.infra.storage import LocalStorage
from schemahub.settings import Settings
from tests.helpers import FakeClock


def test_exhausted_retries_say_how_many_and_for_how_long() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=4, base=0.5, cap=2.0)

    def always_500() -> None:
        raise ExchangeUnavailable("binance answered 500: An unknown error occurred", exchange="binance")

    with pytest.raises(ExchangeUnavailable) as caught:
        policy.call(always_500, sleep=clock.sleep)
    assert str(caught.value).startswith("binance answered 500: An unknown error occurred (gave up after 4 "
                                        "attempts over ")
    assert len(clock.slept) == 3


def test_a_late_success_after_a_ban_does_not_reopen_the_circuit() -> None:
    breaker = CircuitBreaker("binance")
    breaker.ban("418")
    breaker.on_success()  # the answer to a request sent before the ban arrives late
    assert breaker.state is State.DEAD
    with pytest.raises(CircuitOpen) as caught:
        breaker.before_call()
    assert caught.value.dead


def _client(handler: httpx.MockTransport) -> object:
    from schemahub.http.client import ClientConfig, ExchangeClient
    from schemahub.http.retry import RetryPolicy as Policy

    config = ClientConfig(base_url="http://exchange.test", rate=None, burst=1, retry=Policy(max_attempts=1))
    return ExchangeClient("coinbase", config, transport=handler)


def test_undecodable_bodies_and_redirect_loops_are_exchange_errors() -> None:
    def broken_gzip(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip at all")

    def loop(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://exchange.test/again"})

    from schemahub.http.client import ExchangeClient

    with _client(httpx.MockTransport(broken_gzip)) as client:  # type: ignore[attr-defined]
        assert isinstance(client, ExchangeClient)
        with pytest.raises(MalformedResponse, match="could not be decoded"):
            client.get_json("/products")
    with _client(httpx.MockTransport(loop)) as client:  # type: ignore[attr-defined]
        client._http.follow_redirects = True
        with pytest.raises(ExchangeRejected, match="too many redirects"):
            client.get_json("/products")


def test_a_table_that_cannot_be_created_says_why_at_once(tmp_path: Path) -> None:
    from schemahub.table.delta import TradesTable

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    started = time.monotonic()
    with pytest.raises(StorageError, match="creating the table") as caught:
        TradesTable(str(blocker / "table")).create()
    assert time.monotonic() - started < 5  # not retried as if it were a commit race
    assert "another writer" not in str(caught.value)


class _SlowRenewals:
    """A lock backend whose renewals wait for the test (a heartbeat racing a release)."""

    def __init__(self, lost: bool) -> None:
        self.lost = lost
        self.renewing = threading.Event()
        self.proceed = threading.Event()
        self.renewals = 0

    def acquire(self, name: str, owner: str, ttl: float) -> Lease:
        return Lease(name, owner, 1, time.time() + ttl)

    def renew(self, lease: Lease, ttl: float) -> Lease:
        self.renewals += 1
        self.renewing.set()
        self.proceed.wait(5)
        if self.lost:
            raise LockLost(f"lease {lease.name} was lost")
        return Lease(lease.name, lease.owner, lease.token, time.time() + ttl)

    def release(self, lease: Lease, forget: bool = False) -> None:
        self.lost = True  # from now on its record says released: a renewal fails

    def list(self) -> list[LeaseRecord]:
        return []


def test_a_lease_released_during_a_renewal_is_not_reported_lost(caplog: pytest.LogCaptureFixture) -> None:
    backend = _SlowRenewals(lost=False)
    with caplog.at_level(logging.ERROR, logger="schemahub.locks"), \
            LeaseKeeper(backend, "me", ttl=0.3) as keeper:
        lease = keeper.acquire("ingest/coinbase/BTC-USD")
        assert backend.renewing.wait(5)  # the heartbeat took its copy and is renewing
        keeper.release(lease)  # the product finished meanwhile
        backend.proceed.set()
        time.sleep(0.3)
    assert not [r for r in caplog.records if "lost lease" in r.getMessage()]


def test_a_lost_lease_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    backend = _SlowRenewals(lost=True)
    backend.proceed.set()
    with caplog.at_level(logging.ERROR, logger="schemahub.locks"), \
            LeaseKeeper(backend, "me", ttl=0.15) as keeper:
        lease = keeper.acquire("ingest/coinbase/BTC-USD")
        deadline = time.monotonic() + 5
        while not [r for r in caplog.records if "lost lease" in r.getMessage()]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        renewals = backend.renewals
        time.sleep(0.5)  # ten more heartbeats
        with pytest.raises(LockLost):
            keeper.check(lease)
    assert len([r for r in caplog.records if "lost lease" in r.getMessage()]) == 1
    assert backend.renewals == renewals  # a lease known to be lost is not renewed again


def test_an_unknown_setting_is_an_error_naming_the_closest_one() -> None:
    with pytest.raises(ConfigError,
                       match=r"unknown setting SCHEMAHUB_LOCK_TTLL \(did you mean SCHEMAHUB_LOCK_TTL\?\)"):
        Settings.load("lake", {"SCHEMAHUB_LOCK_TTLL": "30"})
    with pytest.raises(ConfigError, match=r"unknown setting SCHEMAHUB_COINBSE_URL .*SCHEMAHUB_COINBASE_URL"):
        Settings.load("lake", {"SCHEMAHUB_COINBSE_URL": "http://x"})
    assert Settings.load("lake", {"SCHEMAHUB_KRAKEN_URL": "http://k/"}).venue("kraken").url == "http://k"


def test_global_options_may_follow_the_command() -> None:
    from schemahub.cli.app import hoist_global_options

    assert hoist_global_options(["ingest", "-v", "--log-format", "json", "--lake", "x", "-p", "BTC-USD"]) == \
        ["-v", "--log-format", "json", "ingest", "--lake", "x", "-p", "BTC-USD"]
    assert hoist_global_options(["query", "--log-format=text", "SELECT 1", "--", "-v"]) == \
        ["--log-format=text", "query", "SELECT 1", "--", "-v"]


def test_the_ingest_summary_reads_at_80_columns() -> None:
    from schemahub.cli.output import ingest_table, print_table
    from schemahub.ingest.report import IngestReport, ProductReport
    from schemahub.timeutil import now_us

    report = IngestReport("20261130T120000Z-1a2b3c4d", "binance", started_at=datetime.now(UTC))
    for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT"):
        item = ProductReport("binance", symbol, trades=1_234_567, elapsed_s=321.0)
        item.note_trades(5_100_000_001, 5_101_234_567, now_us() - 10**9, now_us(), 1_234_567)
        report.products.append(item)
    narrow = Console(width=80, record=True)
    narrow.print(ingest_table(report))
    lines = narrow.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert sum("BTC-USDT" in line for line in lines) == 1  # one line per product: nothing wraps
    wide = Console(width=160, record=True)
    print_table(wide, ingest_table(report, wide=True), wide=True)
    text = wide.export_text()
    assert sum("BTC-USDT" in line for line in text.splitlines()) == 1
    assert "5100000001..5101234567" in text


def _lake_with_a_corrupt_file(tmp_path: Path, make_sim: object) -> tuple[Path, str]:
    from tests.helpers import ingest, raw_files

    sim = make_sim()  # type: ignore[operator]
    lake = tmp_path / "lake"
    assert ingest(lake, sim, ["BTC-USD", "SOL-USD"]).ok
    key = raw_files(lake, "BTC-USD")[1][0]
    storage = LocalStorage(lake)
    storage.write(key, (storage.read(key) or b"")[:200])
    return lake, key


def test_a_file_quarantined_before_a_lost_commit_race_is_still_reported(tmp_path: Path,
                                                                         make_sim: object) -> None:
    """After a CommitConflict the transform plans again; the re-plan skips the file it
    quarantined in the first attempt, and the report must still name it (exit 4, not 0)."""
    from schemahub.errors import CommitConflict
    from schemahub.table.delta import TradesTable
    from schemahub.transform.report import TransformOptions
    from schemahub.transform.runner import Transformer

    lake, key = _lake_with_a_corrupt_file(tmp_path, make_sim)

    class LosesOnce(TradesTable):
        lost = False

        def write(self, batches, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not LosesOnce.lost:
                LosesOnce.lost = True
                list(batches)
                raise CommitConflict("another writer committed first")
            return super().write(batches, *args, **kwargs)

    storage = LocalStorage(lake)
    report = Transformer(storage, LosesOnce(storage.url_for("table/trades"))).run(TransformOptions())
    assert report.commit_attempts == 2
    assert [q.key for q in report.quarantined] == [key] and report.needs_attention


def test_a_failing_table_writer_never_hangs_the_transform(tmp_path: Path, make_sim: object) -> None:
    """delta-rs failing while the reader thread waits on a full queue - here, to hand over its
    end-of-data marker after the last of three read groups: the error surfaces, nothing hangs."""
    from schemahub.simulator.market import ProductSpec
    from schemahub.table.delta import TradesTable
    from schemahub.transform.report import TransformOptions
    from schemahub.transform.runner import Transformer
    from tests.helpers import ingest, raw_files

    sim = make_sim(products=[ProductSpec("BTC-USD", 64_000.0, history=2_900, first_id=1, gap_rate=0.0)])  # type: ignore[operator]
    lake = tmp_path / "lake"
    assert ingest(lake, sim, ["BTC-USD"]).ok
    assert len(raw_files(lake, "BTC-USD")) == 3

    class Breaks(TradesTable):
        def write(self, batches, *args, **kwargs):  # type: ignore[no-untyped-def]
            next(iter(batches))  # the reader has queued more by now
            raise StorageError("writing to the table failed: disk gone")

    storage = LocalStorage(lake)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            Transformer(storage, Breaks(storage.url_for("table/trades")), run_id="t").run(
                TransformOptions(group_files=1))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the transform hung"
    assert len(outcome) == 1 and isinstance(outcome[0], StorageError)


def test_progress_lines_stop_when_a_product_finishes(caplog: pytest.LogCaptureFixture) -> None:
    from schemahub.cli.progress import LogProgress
    from schemahub.ingest.report import ProductReport
    from schemahub.metrics.counters import RequestStats

    progress = LogProgress(interval=0.0)
    progress.product_started("coinbase BTC-USD", 10_000)
    progress.product_started("coinbase ETH-USD", 10_000)
    progress.product_finished(ProductReport("coinbase", "BTC-USD", trades=3))  # stopped early
    with caplog.at_level(logging.INFO, logger="schemahub.progress"):
        progress.chunk_done("coinbase ETH-USD", 1000, 1000, RequestStats())
    lines = [r for r in caplog.records if getattr(r, "event", None) == "progress"]
    assert [getattr(r, "product", None) for r in lines] == ["coinbase ETH-USD"]
