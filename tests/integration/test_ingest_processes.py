"""Whole `schemahub ingest` processes: SIGKILL at random moments, and two runs at once."""

from __future__ import annotations

import random
import subprocess
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from schemahub.simulator.server import Faults
from tests.conftest import SimFactory
from tests.helpers import (
    PRODUCTS_FOR,
    assert_lake_matches_truth,
    checkpoint,
    cli_args,
    cli_env,
    gap_ranges,
    held_leases,
    lake_keys,
    raw_files,
    run_cli,
)
from tests.lakes import LakeLike, LakeRef

pytestmark = pytest.mark.slow

PRODUCTS = ["BTC-USD", "SOL-USD"]


def _ingest_args(lake: LakeLike, *extra: str) -> list[str]:
    return ["ingest", "--products", ",".join(PRODUCTS), "--since", "2020-01-01", "--rate", "1000",
            "--burst", "50", "--workers", "2", "--chunk-concurrency", "3", "--lake", str(lake), *extra]


def _count_raw(lake: LakeLike) -> int:
    return sum(1 for key in lake_keys(lake, "raw/") if key.endswith(".jsonl.gz"))


def _content(lake: LakeLike, symbol: str) -> dict[str, list[bytes]]:
    """Raw file name -> its trade lines: what must be identical however the runs went."""
    return {key: [orjson.dumps(r) for r in records] for key, _, records in raw_files(lake, symbol)}


def test_sigkill_at_random_moments_converges_to_the_same_raw_content(tmp_path: Path, lake: LakeRef,
                                                                    make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(rate_limit=False, latency_s=0.01))
    # One page per raw file on both lakes, so files compare one to one (coalescing: below).
    env = cli_env(sim, lake, SCHEMAHUB_RAW_FILE_TRADES="0")
    reference, crashed = tmp_path / "reference", lake
    clean = run_cli(*_ingest_args(reference), env=env)
    assert clean.returncode == 0, clean.stderr
    total = _count_raw(reference)
    assert total > 15

    rng = random.Random(20261127)
    kills = 0
    for _ in range(6):
        target = rng.randint(0, total - 1)
        proc = subprocess.Popen(cli_args(*_ingest_args(crashed)), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # Kill the moment the lake holds `target` raw files (polling the lake, not sleeping blind).
        while _count_raw(crashed) < target and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
    assert kills >= 3, "the runs finished before they could be killed; slow the simulator down"

    final = run_cli(*_ingest_args(crashed), env=env)
    assert final.returncode == 0, final.stderr
    for symbol in PRODUCTS:
        assert _content(crashed, symbol) == _content(reference, symbol)
        got, want = checkpoint(crashed, symbol), checkpoint(reference, symbol)
        assert (got.start_after_id, got.last_trade_id) == (want.start_after_id, want.last_trade_id)
        assert gap_ranges(crashed, symbol) == gap_ranges(reference, symbol)
        assert_lake_matches_truth(crashed, sim, symbol)
    if crashed.kind == "local":  # an S3 object is one PUT: there is no temp file to leave behind
        root = Path(crashed.url)
        assert list((root / "raw").rglob(".*")) == [], "no temp file ever sits among raw files"
        assert list((root / ".tmp").glob("*")) == [], "temp files of killed writers are cleared"


@pytest.mark.parametrize("lock_wait", ["0", "30"])
def test_two_concurrent_runs_never_write_the_same_product_at_once(lake: LakeRef, make_sim: SimFactory,
                                                                  lock_wait: str) -> None:
    sim = make_sim(faults=Faults(rate_limit=False, latency_s=0.05))
    env = cli_env(sim, lake)
    products = "BTC-USD,SOL-USD,BTC-USDT"
    args = cli_args("ingest", "--products", products, "--since", "2020-01-01", "--rate", "1000",
                    "--workers", "1", "--chunk-concurrency", "2", "--lock-wait", lock_wait, "--json",
                    "--lake", lake.url)
    runs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
    reports = [orjson.loads(stdout) for stdout, _ in outputs]

    statuses: dict[str, list[str]] = defaultdict(list)
    for report in reports:
        for item in report["products"]:
            statuses[item["symbol"]].append(item["status"] if item["trades"] == 0 else "wrote")
    for symbol, seen in statuses.items():
        assert sorted(seen).count("wrote") == 1, f"{symbol}: {seen}"
    expected_other = "skipped" if lock_wait == "0" else "up-to-date"
    assert any(expected_other in seen for seen in statuses.values()), statuses

    for symbol in products.split(","):
        assert_lake_matches_truth(lake, sim, symbol)
        # The lake proves it: every file of a product carries one writer and one fencing token.
        writers = {(h.writer.owner, h.writer.lease_token) for _, h, _ in raw_files(lake, symbol)}
        assert len(writers) == 1, writers


def test_a_second_run_of_the_same_job_exits_while_the_first_is_active(lake: LakeRef,
                                                                     make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(rate_limit=False, latency_s=0.05))
    env = cli_env(sim, lake)
    args = [*_ingest_args(lake), "--job", "hourly"]
    first = subprocess.Popen(cli_args(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    while "run/hourly/coinbase" not in held_leases(lake) and first.poll() is None:
        time.sleep(0.002)
    second = run_cli(*args, env=env)
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert second.returncode == 3, second.stderr
    assert "run/hourly/coinbase is held by" in second.stderr


def test_an_object_store_lake_gathers_pages_into_bigger_files_and_survives_sigkill(
        s3_lake: LakeRef, make_sim: SimFactory) -> None:
    # three times the usual history, slowed a little: every run has files left to write when killed
    longer = [replace(p, history=p.history * 3) for p in PRODUCTS_FOR["coinbase"]]
    sim = make_sim(products=longer, faults=Faults(rate_limit=False, latency_s=0.05))
    env = cli_env(sim, s3_lake, SCHEMAHUB_RAW_FILE_TRADES="5000")
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(cli_args(*_ingest_args(s3_lake)), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # kill once this run has written a new file: each run has work left when killed
        target = _count_raw(s3_lake) + 1
        while _count_raw(s3_lake) < target and proc.poll() is None:
            time.sleep(0.01)  # each request takes >= 50 ms
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
    final = run_cli(*_ingest_args(s3_lake), env=env)
    assert final.returncode == 0, final.stderr
    assert kills >= 2, "the runs finished before they could be killed; slow the simulator down"
    for symbol in PRODUCTS:
        assert_lake_matches_truth(s3_lake, sim, symbol)
        files = raw_files(s3_lake, symbol)
        trades = sum(header.trade_count for _, header, _ in files)
        # About 5,000 trades a file (5 pages), not 1,000: a file per page would be 5x as many.
        assert len(files) <= trades / 5000 + 1 + kills, [header.trade_count for _, header, _ in files]
