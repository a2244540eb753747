"""Extending a product's history backwards (``ingest --since`` before its first trade).

Every venue: Coinbase and Binance by id (chunks below the low end), Kraken by cursor (a
separate run from --since whose seam with existing data is deduplicated by id). Checked
row by row against the simulator, in the raw layer and in the table, on both lakes.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from schemahub.ingest.report import Status
from schemahub.raw.layout import parse_key
from schemahub.simulator.server import Faults, ManualClock, Simulator
from schemahub.timeutil import from_us
from tests.conftest import SimFactory
from tests.helpers import (
    EPOCH_2020_US,
    PRODUCTS_FOR,
    TRADED,
    assert_lake_matches_truth,
    assert_table_matches_truth,
    checkpoint,
    cli_args,
    cli_env,
    ingest,
    lake_keys,
    raw_files,
    run_cli,
    transform,
)
from tests.lakes import LakeLike, LakeRef


def _since_before(sim: Simulator, symbol: str, fraction: float) -> tuple[int, int]:
    """A time between two trades about ``fraction`` into the history, and the first id after it."""
    market = sim.market(symbol)
    trades = list(market.trades(0, market.visible(sim.now_us())))
    index = int(len(trades) * fraction)
    while trades[index - 1].time_us == trades[index].time_us:
        index += 1
    before, after = trades[index - 1], trades[index]
    return (before.time_us + after.time_us) // 2 + 1, after.trade_id


@pytest.mark.parametrize("exchange", ["coinbase", "binance", "kraken", "bitfinex", "okx"])
def test_since_before_the_first_trade_extends_history_backwards(lake: LakeRef, make_sim: SimFactory,
                                                                exchange: str) -> None:
    sim = make_sim(exchange=exchange)
    symbol = TRADED[exchange][0]
    late_since, late_first = _since_before(sim, symbol, 0.7)
    early_since, early_first = _since_before(sim, symbol, 0.3)

    ingest(lake, sim, [symbol], since_us=late_since)
    first = checkpoint(lake, symbol, exchange)
    assert first.start_after_id < late_first
    transform(lake)  # the table already holds the late part: the extension lands below it

    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(120)  # the head moves on too: one run extends both ends
    report = ingest(lake, sim, [symbol], since_us=early_since)
    item = report.products[0]
    assert item.status is Status.OK
    assert item.low_before == first.start_after_id
    cp = assert_lake_matches_truth(lake, sim, symbol)
    assert item.low_after == cp.start_after_id
    market = sim.market(symbol)
    first_trade = next(t for t in market.trades(0, market.visible(sim.now_us())) if t.trade_id == early_first)
    # The low end sits just below the first trade at/after --since (ids the exchange skipped
    # between the two are in the gap log, checked above against the simulator).
    assert [t.trade_id for t in market.trades(0, market.visible(sim.now_us()))
            if cp.start_after_id < t.trade_id < early_first] == []
    assert cp.first_trade_time == from_us(first_trade.time_us)
    assert cp.covered_since == from_us(early_since)
    assert cp.backfill is None
    assert cp.last_trade_id > first.last_trade_id

    transform(lake)
    assert_table_matches_truth(lake, sim, [symbol])

    listed = run_cli("checkpoints", "list", "--wide", "--lake", lake.url, env=cli_env(None, lake))
    assert listed.returncode == 0, listed.stderr
    row = next([cell for cell in line.split() if cell.isascii()] for line in listed.stdout.splitlines()
               if symbol in line and exchange in line)  # (cells without the table's box drawing)
    assert row[2:5] == ["ok", *from_us(first_trade.time_us).strftime("%Y-%m-%d %H:%M:%S").split()]
    assert str(cp.start_after_id) in row and str(cp.last_trade_id) in row

    # Asking again for what is covered costs no search and changes nothing.
    again = ingest(lake, sim, [symbol], since_us=early_since).products[0]
    assert again.status is Status.UP_TO_DATE
    assert again.stats.snapshot().requests <= 2  # (the product list and) the head or one page
    assert checkpoint(lake, symbol, exchange).start_after_id == cp.start_after_id


def test_since_before_the_exchange_history_records_it_once(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = make_sim()
    ingest(lake, sim, ["BTC-USD"])  # from 2020: the whole simulated history
    cp = checkpoint(lake, "BTC-USD")
    assert cp.start_after_id == sim.market("BTC-USD").spec.first_id - 1
    assert cp.covered_since == from_us(EPOCH_2020_US)
    report = ingest(lake, sim, ["BTC-USD"], since_us=1)
    assert report.products[0].status is Status.UP_TO_DATE
    after = checkpoint(lake, "BTC-USD")
    assert (after.start_after_id, after.covered_since) == (cp.start_after_id, from_us(1))
    again = ingest(lake, sim, ["BTC-USD"], since_us=1).products[0]
    assert again.stats.snapshot().requests == 1  # the head alone: no binary search any more


def _files_below(lake: LakeLike, symbol: str, low: int) -> int:
    keys = [parse_key(k) for k in lake_keys(lake, "raw/") if f"/symbol={symbol}/" in k]
    return sum(1 for k in keys if k is not None and k.last_id <= low)


@pytest.mark.slow
@pytest.mark.parametrize("exchange", ["coinbase", "kraken", "bitfinex", "okx"])
def test_sigkill_during_a_backward_extension_loses_and_duplicates_nothing(
        tmp_path: Path, lake: LakeRef, make_sim: SimFactory, exchange: str) -> None:
    if lake.kind == "s3" and exchange != "coinbase":
        pytest.skip("the S3 lake's side of this is covered by coinbase (the engines are the same)")
    symbol = TRADED[exchange][0]
    # Enough history below the first run's start for a dozen pages or more, slowed a little
    # (the CLI pages Bitfinex 10,000 trades at a time, OKX 100).
    pages = {"bitfinex": 120_000, "okx": 4_000}.get(exchange, 15_000)
    spec = next(replace(p, history=max(p.history, pages))
                for p in PRODUCTS_FOR[exchange] if p.symbol == symbol)
    sim = make_sim(exchange=exchange, products=[spec], faults=Faults(rate_limit=False, latency_s=0.03))
    late_since, _ = _since_before(sim, symbol, 0.8)
    env = cli_env(sim, lake, SCHEMAHUB_RAW_FILE_TRADES="0")  # a file per page: kills land between them
    reference = tmp_path / "reference"
    ref_env = cli_env(sim, None, SCHEMAHUB_RAW_FILE_TRADES="0")
    base = ["ingest", "--exchange", exchange, "--products", symbol, "--rate", "1000", "--burst", "50",
            "--chunk-concurrency", "2"]
    late = from_us(late_since).isoformat()
    for where, run_env in ((str(lake), env), (str(reference), ref_env)):
        done = run_cli(*base, "--since", late, "--lake", where, env=run_env)
        assert done.returncode == 0, done.stderr
    low = checkpoint(lake, symbol, exchange).start_after_id
    clean = run_cli(*base, "--since", "2020-01-01", "--lake", str(reference), env=ref_env)
    assert clean.returncode == 0, clean.stderr

    kills = 0
    for wanted in (1, 3, 5):
        proc = subprocess.Popen(cli_args(*base, "--since", "2020-01-01", "--lake", str(lake)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill once the extension wrote `wanted` more files below the old low end.
        while _files_below(lake, symbol, low) < wanted and proc.poll() is None:
            time.sleep(0.01)  # a page takes >= 30 ms: no kill window is missed
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        low_now = checkpoint(lake, symbol, exchange)
        assert low_now.start_after_id <= low  # the low end only moves down, over completed work
    assert kills >= 2, "the extension finished before it could be killed; slow the simulator down"

    final = run_cli(*base, "--since", "2020-01-01", "--lake", str(lake), env=env)
    assert final.returncode == 0, final.stderr
    got, want = checkpoint(lake, symbol, exchange), checkpoint(reference, symbol, exchange)
    assert (got.start_after_id, got.last_trade_id) == (want.start_after_id, want.last_trade_id)
    assert got.backfill is None
    assert_lake_matches_truth(lake, sim, symbol)
    mine = sorted(r for _, _, records in raw_files(lake, symbol, exchange) for r in map(str, records))
    theirs = sorted(r for _, _, records in raw_files(reference, symbol, exchange) for r in map(str, records))
    assert mine == theirs
    transform(lake)
    assert_table_matches_truth(lake, sim, [symbol])
