"""Binance's bulk archive: files for whole days and months, REST for the seams, exactly once.

The simulator serves the archive layout from the same trades as its REST API (ms times
before 2025-01-01, µs after), with knobs for unpublished periods, corrupt and truncated
downloads, files that leave trades out, rows out of order and header rows. Every test
compares the raw layer and the table with the simulator's ground truth, row by row.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemahub.ingest.report import Status
from schemahub.simulator.archive import ArchiveFaults
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.market import ProductSpec
from schemahub.simulator.server import Faults, Simulator
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

SYMBOL = "ETH-USDT"
NATIVE = "ETHUSDT"
# About 4.6 days of trades before the simulator's clock (2026-11-20 12:00), 1 in 1000 ids skipped.
SPEC = replace(simulator_class("binance").test_products[1], trades_per_s=0.05, history=20_000, gap_rate=0.001)


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


def _sim(make_sim: SimFactory, archive: ArchiveFaults | None = None, spec: ProductSpec = SPEC,
         start: float | None = None) -> Simulator:
    kwargs = {} if start is None else {"start": start}
    faults = Faults(rate_limit=False, archive=archive or ArchiveFaults())
    return make_sim(products=[spec], exchange="binance", faults=faults, **kwargs)


def _archive_keys(lake: LakeLike) -> list[str]:
    return [k for k in lake_keys(lake, "raw/") if "/archives/" in k or k.endswith(".archive.json")]


def _sources(lake: LakeLike) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(archive coverage, REST coverage) of the product: (covers_after, covers_through] each."""
    archive: list[tuple[int, int]] = []
    rest: list[tuple[int, int]] = []
    for _, header, _ in raw_files(lake, SYMBOL, "binance"):
        span = (header.covers_after_id, header.covers_through_id)
        (archive if header.archive is not None else rest).append(span)
    return sorted(archive), sorted(rest)


def _assert_exact(lake: LakeLike, sim: Simulator) -> None:
    assert_lake_matches_truth(lake, sim, SYMBOL)
    transform(lake)
    assert_table_matches_truth(lake, sim, [SYMBOL])


def test_archive_only_is_exact_and_stops_at_the_last_published_day(lake: LakeRef,
                                                                   make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="archive")
    item = report.products[0]
    assert item.status is Status.OK, item.error
    cp = checkpoint(lake, SYMBOL, "binance")
    # Archives only: the watermark ends at the last trade of 11-19 (11-20 is today's, unpublished).
    assert from_us(sim.market(SYMBOL).trades(0, 1)[0].time_us).date().isoformat() < "2026-11-16"
    assert cp.last_trade_time is not None and cp.last_trade_time.date().isoformat() == "2026-11-19"
    archive, _ = _sources(lake)
    assert archive and item.archive_files == len(archive)
    # REST fetched nothing but the ids the files do not have, to confirm the exchange skipped them.
    assert all(header.trade_count == 0 for _, header, _ in raw_files(lake, SYMBOL, "binance")
               if header.archive is None)
    assert gap_ranges(lake, SYMBOL, "binance")  # the simulator skipped some ids: REST confirmed them
    _assert_exact(lake, sim)
    # Each file is the published zip, byte for byte: four daily files, checked by the helper's sha256.
    zips = [k for k in _archive_keys(lake) if k.endswith(".zip")]
    assert [k.rsplit("/", 1)[-1].split(".")[0] for k in zips] == [
        f"{NATIVE}-trades-2026-11-{day}" for day in (16, 17, 18, 19)]


def test_auto_takes_rest_for_an_unpublished_day_and_the_tail_with_exact_seams(lake: LakeRef,
                                                                              make_sim: SimFactory) -> None:
    sim = _sim(make_sim, ArchiveFaults(unpublished=frozenset({"2026-11-19"})))
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto")
    assert report.products[0].status is Status.OK
    archive, rest = _sources(lake)
    market = sim.market(SYMBOL)
    trades = market.trades(0, market.visible(sim.now_us()))
    last_archived = max(through for _, through in archive)
    last_of_18 = max(t.trade_id for t in trades if from_us(t.time_us).date().isoformat() == "2026-11-18")
    assert last_archived == last_of_18
    # The seam is exact: REST starts right after the archive's last id and covers to the head.
    assert min(after for after, _ in rest if after >= last_archived) == last_archived
    cp = checkpoint(lake, SYMBOL, "binance")
    assert cp.last_trade_id == trades[-1].trade_id
    _assert_exact(lake, sim)


def test_an_id_jump_between_files_is_fetched_from_rest_not_logged_as_a_gap(lake: LakeRef,
                                                                          make_sim: SimFactory) -> None:
    archive = ArchiveFaults(leave_out_first={"2026-11-18": 25}, out_of_order=frozenset({"2026-11-17"}),
                            header=frozenset({"2026-11-18"}), lowercase_bools=True)
    sim = _sim(make_sim, archive)
    ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="archive")
    _, rest = _sources(lake)
    # The 25 trades 11-18's file leaves out came from REST, as one file right before it.
    market = sim.market(SYMBOL)
    first_of_18 = min(t.trade_id for t in market.trades(0, market.visible(sim.now_us()))
                      if from_us(t.time_us).date().isoformat() == "2026-11-18")
    filled = [(a, b) for a, b in rest if a == first_of_18 - 1 and b >= first_of_18 + 24]
    assert filled, f"no REST file covers the ids 11-18's file left out: {rest}"
    _assert_exact(lake, sim)  # the gap log holds only the ids the simulator really skipped


def test_a_checksum_mismatch_once_is_retried(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim, ArchiveFaults(corrupt={"2026-11-17": 1}))
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="archive")
    assert report.products[0].status is Status.OK
    assert report.products[0].stats.snapshot().retries >= 1
    assert sim.api.archive is not None
    assert sim.api.archive.served(f"/data/spot/daily/trades/{NATIVE}/{NATIVE}-trades-2026-11-17.zip") == 2
    assert report.products[0].archive_fallbacks == []
    _assert_exact(lake, sim)


def test_a_persistent_checksum_mismatch_stores_nothing_and_rest_covers_the_day(lake: LakeRef,
                                                                             make_sim: SimFactory) -> None:
    sim = _sim(make_sim, ArchiveFaults(corrupt={"2026-11-17": -1}))
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto",
                    SCHEMAHUB_RETRY_MAX_ATTEMPTS="2")
    item = report.products[0]
    assert item.status is Status.OK, item.error
    assert len(item.archive_fallbacks) == 1 and "2026-11-17" in item.archive_fallbacks[0]
    assert "sha256" in item.archive_fallbacks[0]
    assert not [k for k in _archive_keys(lake) if "2026-11-17" in k], "a corrupt file was stored"
    _assert_exact(lake, sim)


def test_a_persistent_checksum_mismatch_fails_an_archive_only_run_naming_the_file(
        tmp_path: Path, make_sim: SimFactory) -> None:
    sim = _sim(make_sim, ArchiveFaults(corrupt={"2026-11-17": -1}))
    lake = tmp_path / "lake"
    done = run_cli("ingest", "--exchange", "binance", "--products", SYMBOL, "--since", "2026-11-16",
                   "--source", "archive", "--lake", str(lake),
                   env=cli_env(sim, SCHEMAHUB_RETRY_MAX_ATTEMPTS="2"))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    text = done.stdout + done.stderr
    assert f"{NATIVE}-trades-2026-11-17.zip" in text
    assert "sha256" in text and "published checksum" in text
    assert not [k for k in _archive_keys(lake) if "2026-11-17" in k]
    cp = checkpoint(lake, SYMBOL, "binance")  # 11-16 was committed before the bad file
    assert cp.last_trade_time is not None and cp.last_trade_time.date().isoformat() == "2026-11-16"
    assert_lake_matches_truth(lake, sim, SYMBOL)


def test_a_file_in_the_wrong_time_unit_is_refused_by_name(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim, ArchiveFaults(wrong_unit=frozenset({"2026-11-18"})))
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto")
    item = report.products[0]
    assert item.status is Status.OK
    assert len(item.archive_fallbacks) == 1
    assert "2026-11-18" in item.archive_fallbacks[0] and "13 digits" in item.archive_fallbacks[0]
    _assert_exact(lake, sim)


def test_files_on_both_sides_of_2025_carry_ms_then_us(lake: LakeRef, make_sim: SimFactory) -> None:
    start = datetime(2025, 1, 2, 12, tzinfo=UTC).timestamp()
    sim = _sim(make_sim, start=start)  # 2024-12-28 .. 2025-01-02: both time units
    ingest(lake, sim, [SYMBOL], since_us=_us("2024-12-30"), source="auto")
    units = {header.archive.period: header.time_unit for _, header, _ in raw_files(lake, SYMBOL, "binance")
             if header.archive is not None}
    assert units["2024-12-31"] == "ms" and units["2025-01-01"] == "us"
    # Before 2025 the exchange's clock had whole milliseconds, after it microseconds.
    market = sim.market(SYMBOL)
    trades = market.trades(0, market.visible(sim.now_us()))
    assert all(t.time_us % 1000 == 0 for t in trades if t.time_us < _us("2025-01-01"))
    assert any(t.time_us % 1000 for t in trades if t.time_us >= _us("2025-01-01"))
    _assert_exact(lake, sim)


def test_whole_months_come_as_monthly_files(lake: LakeRef, make_sim: SimFactory) -> None:
    spec = replace(SPEC, trades_per_s=0.004, history=20_000)  # about 58 days
    sim = _sim(make_sim, spec=spec)
    ingest(lake, sim, [SYMBOL], since_us=_us("2026-10-01"), source="archive")
    periods = sorted({header.archive.period for _, header, _ in raw_files(lake, SYMBOL, "binance")
                      if header.archive is not None})
    assert periods[0] == "2026-10" and "2026-11-19" in periods and "2026-10-15" not in periods
    _assert_exact(lake, sim)


def test_backward_extension_from_archives_joins_the_rest_history(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-19T06:00:00"), source="rest")
    before = checkpoint(lake, SYMBOL, "binance")
    transform(lake)
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto")
    item = report.products[0]
    assert item.status is Status.OK, item.error
    assert item.archive_files > 0
    after = checkpoint(lake, SYMBOL, "binance")
    assert after.start_after_id < before.start_after_id and after.backfill is None
    assert after.covered_since == from_us(_us("2026-11-16"))
    archive, _ = _sources(lake)
    assert max(through for _, through in archive) <= before.start_after_id  # nothing covered twice
    _assert_exact(lake, sim)


@pytest.mark.slow
def test_sigkill_during_a_download_leaves_nothing_half_written(tmp_path: Path, make_sim: SimFactory) -> None:
    spec = replace(SPEC, trades_per_s=0.5, history=60_000)  # ~1.4 days: ~4 MB zips per day, one whole
    sim = _sim(make_sim, ArchiveFaults(bytes_per_s=2_000_000), spec=spec)
    lake = tmp_path / "lake"
    env = cli_env(sim)
    args = cli_args("ingest", "--exchange", "binance", "--products", SYMBOL, "--since", "2026-11-17",
                    "--source", "archive", "--lake", str(lake))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spool = lake / ".tmp"
    # Kill once a download is under way in the spool (polling the lake, not sleeping blind).
    while proc.poll() is None and not any(p.stat().st_size > 100_000 for p in spool.glob("*.tmp")):
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before the download could be interrupted"
    proc.kill()
    proc.wait()
    assert list(spool.glob("*.tmp")), "the killed download left no spool file to clear"
    assert not _archive_keys(lake), "a half-downloaded archive reached the raw layer"
    final = run_cli("ingest", "--exchange", "binance", "--products", SYMBOL, "--since", "2026-11-17",
                    "--source", "archive", "--lake", str(lake), env=env)
    assert final.returncode == 0, final.stderr
    assert not list(spool.glob("*.tmp")), "the dead run's spool file was not cleared"
    _assert_exact(lake, sim)


def test_an_unreachable_archive_host_leaves_auto_on_rest_and_fails_archive_only(lake: LakeRef,
                                                                               make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    nowhere = "http://127.0.0.1:9"
    failed = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="archive",
                    SCHEMAHUB_BINANCE_ARCHIVE_URL=nowhere, SCHEMAHUB_RETRY_MAX_ATTEMPTS="2")
    assert failed.products[0].status is Status.FAILED
    assert "cannot reach http://127.0.0.1:9" in (failed.products[0].error or "")
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto",
                    SCHEMAHUB_BINANCE_ARCHIVE_URL=nowhere, SCHEMAHUB_RETRY_MAX_ATTEMPTS="2")
    item = report.products[0]
    assert item.status is Status.OK, item.error
    assert item.archive_fallbacks and item.archive_fallbacks[0].startswith("archive host: ")
    assert not _archive_keys(lake)
    _assert_exact(lake, sim)

