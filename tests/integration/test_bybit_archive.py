"""Bybit spot: history from daily archive files alone, ids numbered per day, exactly once.

The simulator serves Bybit's archive layout (gzip CSV per UTC day, a header, rows numbered
from 1, an HTML index of the folder) from its own ground truth, whose trade ids are the
ids SchemaHub builds: ``YYYYMMDD`` x 10^9 + the row's number. Every test compares the raw
layer and the table with that ground truth, row by row.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemahub.ingest.report import Status
from schemahub.simulator.archive import ArchiveFaults
from schemahub.simulator.server import Faults, ManualClock, Simulator
from schemahub.timeutil import from_us
from tests.conftest import SimFactory
from tests.helpers import (
    assert_lake_matches_truth,
    assert_table_matches_truth,
    checkpoint,
    cli_args,
    cli_env,
    gap_ranges,
    ingest,
    lake_keys,
    raw_files,
    run_cli,
    transform,
)
from tests.lakes import LakeLike, LakeRef

SYMBOL = "BTC-USDT"
INDEX = "/spot/BTCUSDT/"


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


def _sim(make_sim: SimFactory, archive: ArchiveFaults | None = None) -> Simulator:
    return make_sim(exchange="bybit", faults=Faults(rate_limit=False, archive=archive or ArchiveFaults()))


def _file(day: str) -> str:
    return f"/spot/BTCUSDT/BTCUSDT_{day}.csv.gz"


def _exact(lake: LakeLike, sim: Simulator, symbols: list[str] | None = None) -> None:
    for symbol in symbols or [SYMBOL]:
        assert_lake_matches_truth(lake, sim, symbol)
    transform(lake)
    assert_table_matches_truth(lake, sim, symbols or [SYMBOL])


def test_days_then_the_next_day_each_file_once(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    assert sim.api.archive is not None
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"))
    item = report.products[0]
    assert item.status is Status.OK, item.error
    cp = checkpoint(lake, SYMBOL, "bybit")
    # The clock is 11-20 12:00: files up to 11-19 are published; the next run starts with 11-20.
    assert cp.cursor == "2026-11-20" and item.archive_files == 4
    assert cp.last_trade_time is not None and cp.last_trade_time.date().isoformat() == "2026-11-19"
    assert gap_ranges(lake, SYMBOL, "bybit") == []  # day seams are not gaps
    _exact(lake, sim)

    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(86_400)
    again = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16")).products[0]
    assert again.status is Status.OK and again.archive_files == 1
    assert all(sim.api.archive.served(_file(f"2026-11-{d}")) == 1 for d in (16, 17, 18, 19, 20))
    assert checkpoint(lake, SYMBOL, "bybit").cursor == "2026-11-21"
    _exact(lake, sim)
    # Nothing new: asking again downloads nothing but the folder's index.
    quiet = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16")).products[0]
    assert quiet.status is Status.UP_TO_DATE and quiet.stats.snapshot().requests == 1


def test_a_cold_start_from_2020_asks_for_the_listed_days_only(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    item = ingest(tmp_path, sim, [SYMBOL], since_us=_us("2020-01-01")).products[0]
    assert item.status is Status.OK, item.error
    market = sim.market(SYMBOL)
    first_day = from_us(market.trades(0, 1)[0].time_us).date()
    days = (datetime(2026, 11, 20).date() - first_day).days  # every published day, one file each
    assert item.archive_files == days and item.stats.snapshot().requests == days + 1  # + the index
    _exact(tmp_path, sim)


def test_a_dry_run_counts_the_listed_files(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    plan = ingest(tmp_path, sim, [SYMBOL], since_us=_us("2026-11-16"), dry_run=True)
    # the folder's index, then 11-16 .. 11-19 (published; 11-20 is the clock's day)
    assert plan.products[0].planned_requests == 1 + 4
    assert not lake_keys(tmp_path)


def test_extending_back_joins_the_covered_days(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-18"))
    before = checkpoint(lake, SYMBOL, "bybit")
    transform(lake)
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-15"))
    item = report.products[0]
    assert item.status is Status.OK, item.error
    after = checkpoint(lake, SYMBOL, "bybit")
    assert after.backfill is None and after.start_after_id < before.start_after_id
    assert after.covered_since == from_us(_us("2026-11-15"))
    assert after.first_trade_time is not None and after.first_trade_time.date().isoformat() == "2026-11-15"
    _exact(lake, sim)


def test_a_damaged_download_is_fetched_again_and_a_persistent_one_fails_naming_the_file(
        tmp_path: Path, make_sim: SimFactory) -> None:
    once = _sim(make_sim, ArchiveFaults(corrupt={"2026-11-17": 1}))
    item = ingest(tmp_path / "a", once, [SYMBOL], since_us=_us("2026-11-16")).products[0]
    assert item.status is Status.OK, item.error
    assert once.api.archive is not None and once.api.archive.served(_file("2026-11-17")) == 2
    _exact(tmp_path / "a", once)

    always = _sim(make_sim, ArchiveFaults(corrupt={"2026-11-17": -1}))
    failed = ingest(tmp_path / "b", always, [SYMBOL], since_us=_us("2026-11-16")).products[0]
    assert failed.status is Status.FAILED and failed.error is not None
    assert "BTCUSDT_2026-11-17.csv.gz" in failed.error
    # what came before the damaged day is committed and exact; nothing of it or after it is
    cp = checkpoint(tmp_path / "b", SYMBOL, "bybit")
    assert cp.cursor == "2026-11-17" and cp.last_trade_time is not None
    assert cp.last_trade_time.date().isoformat() == "2026-11-16"
    assert_lake_matches_truth(tmp_path / "b", always, SYMBOL)


@pytest.mark.slow
def test_sigkill_during_downloads_loses_and_duplicates_nothing(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = _sim(make_sim, ArchiveFaults(bytes_per_s=60_000.0))
    lake, reference = tmp_path / "lake", tmp_path / "reference"
    env = cli_env(sim)
    args = ["ingest", "--exchange", "bybit", "--products", "BTC-USDT,ETH-USDT", "--since", "2026-11-01"]
    done = run_cli(*args, "--lake", str(reference), env=env)
    assert done.returncode == 0, done.stderr
    kills = 0
    for wanted in (1, 3, 5):
        proc = subprocess.Popen(cli_args(*args, "--lake", str(lake)), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None and sum(k.endswith(".csv.gz") for k in lake_keys(lake, "raw/")) < wanted:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
    assert kills >= 2, "the run finished before it could be killed; slow the archive down"
    final = run_cli(*args, "--lake", str(lake), env=env)
    assert final.returncode == 0, final.stderr
    for symbol in ("BTC-USDT", "ETH-USDT"):
        mine, theirs = checkpoint(lake, symbol, "bybit"), checkpoint(reference, symbol, "bybit")
        assert (mine.start_after_id, mine.last_trade_id, mine.cursor) == \
            (theirs.start_after_id, theirs.last_trade_id, theirs.cursor)
        assert sorted(map(str, (r for _, _, rs in raw_files(lake, symbol, "bybit") for r in rs))) == \
            sorted(map(str, (r for _, _, rs in raw_files(reference, symbol, "bybit") for r in rs)))
    assert not [k for k in lake_keys(lake) if k.endswith((".partial", ".tmp"))]
    _exact(lake, sim, ["BTC-USDT", "ETH-USDT"])


def test_a_rebuilt_checkpoint_bridges_the_day_seams(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    lake = tmp_path / "lake"
    ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"))
    before = checkpoint(lake, SYMBOL, "bybit")
    (lake / "state" / "checkpoints" / "bybit" / f"{SYMBOL}.json").write_text('{"watermark": 7')  # torn
    rebuilt = run_cli("checkpoints", "rebuild", "--exchange", "bybit", "--products", SYMBOL,
                      "--lake", str(lake), env=cli_env(sim))
    assert rebuilt.returncode == 0, rebuilt.stderr
    after = checkpoint(lake, SYMBOL, "bybit")
    # every day's records are one covered interval (a new day's first id is a seam, not a hole)
    assert (after.start_after_id, after.last_trade_id) == (before.start_after_id, before.last_trade_id)
    assert after.cursor == "2026-11-19"  # the newest covered day's file is asked for again
    again = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16")).products[0]
    assert again.status is Status.UP_TO_DATE
    assert sim.api.archive is not None and sim.api.archive.served(_file("2026-11-18")) == 1
    assert checkpoint(lake, SYMBOL, "bybit").cursor == "2026-11-20"
    _exact(lake, sim)
