"""Ingest against the real simulator over HTTP, checked trade by trade against its ground truth."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

from schemahub import pipeline
from schemahub.ingest.exchanges import IngestRequest
from schemahub.ingest.report import Status
from schemahub.ingest.run import IngestOptions
from schemahub.simulator.server import ManualClock, Simulator
from schemahub.timeutil import iso_to_us
from tests.conftest import SimFactory
from tests.helpers import (
    EPOCH_2020_US,
    TEST_PRODUCTS,
    assert_lake_matches_truth,
    checkpoint,
    ingest,
    raw_files,
    settings,
    skipped_ids,
    trade_id,
)
from tests.lakes import LakeRef

PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]


def test_full_backfill_is_exact(lake: LakeRef, sim: Simulator) -> None:
    report = ingest(lake, sim, PRODUCTS)
    assert report.ok, report.to_dict()
    for symbol in PRODUCTS:
        cp = assert_lake_matches_truth(lake, sim, symbol)
        truth = sim.ground_truth(symbol)
        # The whole history, up to and including the newest trade at the head.
        assert cp.start_after_id == trade_id(truth[0]) - 1
        assert cp.last_trade_id == trade_id(truth[-1])
    # The deliberate gaps were met and logged (the comparison above checks they match).
    assert skipped_ids(sim, "BTC-USD", 0, 10**12)


def test_string_ids_stay_strings_and_mixed_pages_work(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, ["BTC-USDT", "SOL-USD"])
    usdt = [r for _, _, records in raw_files(lake, "BTC-USDT") for r in records]
    assert usdt and all(isinstance(r["trade_id"], str) for r in usdt)
    sol = [r for _, _, records in raw_files(lake, "SOL-USD") for r in records]
    assert {type(r["trade_id"]) for r in sol} == {int, str}


def test_raw_files_cover_chunks_without_overlap(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, ["BTC-USD"])
    found = raw_files(lake, "BTC-USD")
    coverage = sorted((h.covers_after_id, h.covers_through_id) for _, h, _ in found)
    for (_, prev_hi), (lo, _) in itertools.pairwise(coverage):
        assert lo == prev_hi, "chunks must tile the id space: no overlap, no hole"
    for key, header, records in found:
        ids = [trade_id(r) for r in records]
        assert ids == sorted(ids)
        assert header.first_trade_id == ids[0] and header.last_trade_id == ids[-1]
        assert header.trade_count == len(ids)
        assert all(header.covers_after_id < i <= header.covers_through_id for i in ids)
        assert key.endswith(f"-{ids[0]:020d}-{ids[-1]:020d}.jsonl.gz")
        assert header.requests and header.requests[0].headers["cb-after"]


def test_incremental_run_fetches_only_new_trades(lake: LakeRef, sim: Simulator) -> None:
    first = ingest(lake, sim, ["BTC-USD"])
    before = checkpoint(lake, "BTC-USD").last_trade_id
    files_before = {key for key, _, _ in raw_files(lake, "BTC-USD")}
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(600)  # ten minutes of new trades at the head
    second = ingest(lake, sim, ["BTC-USD"])
    after = checkpoint(lake, "BTC-USD")
    assert after.last_trade_id == trade_id(sim.ground_truth("BTC-USD")[-1]) > before
    new_files = [(k, h, r) for k, h, r in raw_files(lake, "BTC-USD") if k not in files_before]
    assert new_files and all(h.covers_after_id >= before for _, h, _ in new_files)
    assert second.products[0].trades == after.last_trade_id - before - len(
        skipped_ids(sim, "BTC-USD", before, after.last_trade_id))
    # Requests: the product list, the head, then one page per chunk of new ids - no re-reads.
    chunks = -(-(after.last_trade_id - before) // 1000)
    assert second.products[0].stats.snapshot().requests == 1 + chunks
    assert first.products[0].cold_start and not second.products[0].cold_start
    assert_lake_matches_truth(lake, sim, "BTC-USD")


def test_second_run_without_new_trades_is_a_no_op(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, ["SOL-USD"])
    report = ingest(lake, sim, ["SOL-USD"])
    assert report.products[0].status is Status.UP_TO_DATE
    assert report.products[0].trades == 0


def test_cold_start_since_finds_the_first_trade_at_or_after(lake: LakeRef, sim: Simulator) -> None:
    truth = sim.ground_truth("BTC-USD")
    pick = truth[len(truth) // 3]
    since = iso_to_us(pick["time"])
    ingest(lake, sim, ["BTC-USD"], since_us=since)
    cp = assert_lake_matches_truth(lake, sim, "BTC-USD")
    first = min(trade_id(r) for _, _, records in raw_files(lake, "BTC-USD") for r in records)
    expected = next(trade_id(t) for t in truth if iso_to_us(t["time"]) >= since)
    assert first == expected
    assert cp.start_after_id < expected
    assert all(iso_to_us(t["time"]) < since for t in truth if trade_id(t) <= cp.start_after_id)


def test_default_cold_start_is_the_last_24_hours(lake: LakeRef, make_sim: SimFactory) -> None:
    # 40,000 trades at 0.3/s span about 37 hours: only the newest 24 hours are ingested.
    # The market's clock starts at the real "now", which the 24-hour guard is measured from.
    spec = replace(TEST_PRODUCTS[0], trades_per_s=0.3, history=40_000, gap_rate=0.0)
    sim2 = make_sim(products=[spec], start=time.time())
    request = IngestRequest(["coinbase"], ["BTC-USD"], lambda _: IngestOptions(), rate=1000, burst=50)
    pipeline.ingest(settings(lake, sim2), request)
    cp = checkpoint(lake, "BTC-USD")
    truth = sim2.ground_truth("BTC-USD")
    horizon = sim2.now_us() - 24 * 3600 * 1_000_000
    assert truth[0]["time"] < truth[-1]["time"]
    assert iso_to_us(truth[0]["time"]) < horizon  # the stream is older than the guard
    expected = next(trade_id(t) for t in truth if iso_to_us(t["time"]) >= horizon)
    assert cp.start_after_id == expected - 1
    assert horizon > EPOCH_2020_US
