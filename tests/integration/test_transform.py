"""Raw lake -> unified Delta table, compared with the simulator's ground truth row by row."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from deltalake import DeltaTable

from schemahub.simulator.server import ManualClock, Simulator
from tests.helpers import (
    assert_lake_matches_truth,
    assert_table_matches_truth,
    checkpoint,
    ingest,
    table_rows,
    transform,
)

PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]


def _cursor(lake: Path, symbol: str) -> tuple[int | None, int | None]:
    delta = DeltaTable(str(lake / "table" / "trades"))
    return (delta.transaction_version(f"schemahub/from/coinbase/{symbol}"),
            delta.transaction_version(f"schemahub/through/coinbase/{symbol}"))


def test_full_run_equals_ground_truth(tmp_path: Path, sim: Simulator) -> None:
    ingest(tmp_path, sim, PRODUCTS)
    report = transform(tmp_path)
    assert not report.needs_attention, report.to_dict()
    rows = assert_table_matches_truth(tmp_path, sim, PRODUCTS)
    assert report.rows_written == len(rows) == report.raw_trades
    # Coinbase sends the maker side: a raw "buy" is a taker sell, row by row.
    assert {r["side"] for r in rows} == {"buy", "sell"}
    for symbol in PRODUCTS:
        cp = checkpoint(tmp_path, symbol)
        assert _cursor(tmp_path, symbol) == (cp.start_after_id, cp.last_trade_id)


def test_incremental_runs_take_only_new_raw_data(tmp_path: Path, sim: Simulator) -> None:
    assert isinstance(sim.clock, ManualClock)
    versions = []
    for step in range(4):
        ingest(tmp_path, sim, PRODUCTS)
        report = transform(tmp_path)
        versions.append(report.table_version_after)
        if step:
            # only the files ingest wrote since the last transform were read
            assert 0 < report.raw_trades < 20_000
        assert_table_matches_truth(tmp_path, sim, PRODUCTS)
        sim.clock.advance(900)
    assert versions == sorted(set(versions))  # one commit per run
    again = transform(tmp_path)
    assert again.products == [] and again.table_version_after == versions[-1]  # nothing new: no commit


def test_rebuild_reproduces_the_table_and_keeps_history(tmp_path: Path, sim: Simulator) -> None:
    ingest(tmp_path, sim, PRODUCTS)
    first = transform(tmp_path)
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(600)
    ingest(tmp_path, sim, PRODUCTS)
    transform(tmp_path)
    before = table_rows(tmp_path)
    rebuilt = transform(tmp_path, rebuild=True)
    assert rebuilt.rebuild and rebuilt.rows_written == len(before)
    assert table_rows(tmp_path) == before  # ingest_ts comes from raw metadata: identical rows
    assert_table_matches_truth(tmp_path, sim, PRODUCTS)
    # the version before the rebuild is still readable (time travel)
    assert len(table_rows(tmp_path, version=first.table_version_after)) == first.rows_written


def test_overlapping_raw_files_are_deduplicated(tmp_path: Path, sim: Simulator) -> None:
    from schemahub.infra.storage import LocalStorage
    from schemahub.raw import files
    from schemahub.raw.layout import RawKey
    from schemahub.sources.base import RawTrade, iso_to_us, us_to_datetime
    from tests.helpers import raw_files

    ingest(tmp_path, sim, ["BTC-USD"])
    transform(tmp_path)
    # A raw file on another chunk grid (as after a checkpoint was rebuilt and an older start
    # re-ingested): ids 500..1499 of the stream, overlapping two existing files.
    existing = raw_files(tmp_path, "BTC-USD")
    records = sorted((r for _, _, recs in existing for r in recs), key=lambda r: int(r["trade_id"]))
    start = int(records[0]["trade_id"])
    chosen = [r for r in records if start + 499 <= int(r["trade_id"]) <= start + 1498]
    header = existing[0][1].model_copy(update={
        "covers_after_id": start + 498, "covers_through_id": start + 1498,
        "first_trade_id": int(chosen[0]["trade_id"]), "last_trade_id": int(chosen[-1]["trade_id"]),
        "trade_count": len(chosen), "missing_ids": [],
        "first_trade_time": us_to_datetime(iso_to_us(chosen[0]["time"])),
        "last_trade_time": us_to_datetime(iso_to_us(chosen[-1]["time"]))})
    key = RawKey("coinbase", header.symbol, header.first_trade_time.date(),  # type: ignore[arg-type]
                 header.first_trade_id, header.last_trade_id)
    trades = [RawTrade(int(r["trade_id"]), r) for r in chosen]
    LocalStorage(tmp_path).create(key.key, files.encode(header, trades))

    rebuilt = transform(tmp_path, rebuild=True)
    assert rebuilt.products[0].duplicates_dropped == len(chosen)
    assert_table_matches_truth(tmp_path, sim, ["BTC-USD"])


def test_concurrent_transforms_commit_exactly_once(tmp_path: Path, sim: Simulator) -> None:
    ingest(tmp_path, sim, PRODUCTS)
    reports: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(transform(tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_table_matches_truth(tmp_path, sim, PRODUCTS)
    written = sorted(r.rows_written for r in reports)  # type: ignore[attr-defined]
    assert written[-1] == len(table_rows(tmp_path)) and sum(written) == written[-1]


def test_dry_run_writes_nothing(tmp_path: Path, sim: Simulator) -> None:
    ingest(tmp_path, sim, PRODUCTS)
    report = transform(tmp_path, dry_run=True)
    assert report.dry_run and report.raw_trades > 0
    assert not (tmp_path / "table").exists()
    assert not (tmp_path / "state" / "transform").exists()


def test_compaction_keeps_every_row_and_vacuum_has_a_guard(tmp_path: Path, sim: Simulator) -> None:
    from schemahub import pipeline
    from schemahub.errors import ConfigError
    from tests.helpers import settings

    assert isinstance(sim.clock, ManualClock)
    for _ in range(3):  # several incremental commits -> small files
        ingest(tmp_path, sim, PRODUCTS)
        transform(tmp_path)
        sim.clock.advance(900)
    before = table_rows(tmp_path)
    files_before = len(DeltaTable(str(tmp_path / "table" / "trades")).file_uris())
    result = pipeline.compact(settings(tmp_path, None), target_size=256 * 1024**2, zorder=False,
                              vacuum=False, retain_hours=168, dry_run_vacuum=False)
    assert result.version_after == result.version_before + 1
    assert len(DeltaTable(str(tmp_path / "table" / "trades")).file_uris()) < files_before
    assert table_rows(tmp_path) == before
    assert_table_matches_truth(tmp_path, sim, PRODUCTS)
    with pytest.raises(ConfigError, match="guard"):
        pipeline.compact(settings(tmp_path, None), target_size=1024, zorder=False, vacuum=True,
                         retain_hours=0, dry_run_vacuum=False)
    assert_lake_matches_truth(tmp_path, sim, "BTC-USD")
