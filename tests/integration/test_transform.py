"""Raw lake -> unified Delta table, compared with the simulator's ground truth row by row."""

from __future__ import annotations

import threading

import pytest

from schemahub.simulator.server import ManualClock, Simulator
from tests.helpers import (
    assert_lake_matches_truth,
    assert_table_matches_truth,
    checkpoint,
    delta_table,
    ingest,
    lake_keys,
    table_rows,
    transform,
)
from tests.lakes import LakeRef

PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]


def _cursor(lake: LakeRef, symbol: str) -> tuple[int | None, int | None]:
    delta = delta_table(lake)
    return (delta.transaction_version(f"schemahub/from/coinbase/{symbol}"),
            delta.transaction_version(f"schemahub/through/coinbase/{symbol}"))


def test_full_run_equals_ground_truth(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, PRODUCTS)
    report = transform(lake)
    assert not report.needs_attention, report.to_dict()
    rows = assert_table_matches_truth(lake, sim, PRODUCTS)
    assert report.rows_written == len(rows) == report.raw_trades
    # Coinbase sends the maker side: a raw "buy" is a taker sell, row by row.
    assert {r["side"] for r in rows} == {"buy", "sell"}
    for symbol in PRODUCTS:
        cp = checkpoint(lake, symbol)
        assert _cursor(lake, symbol) == (cp.start_after_id, cp.last_trade_id)


def test_incremental_runs_take_only_new_raw_data(lake: LakeRef, sim: Simulator) -> None:
    assert isinstance(sim.clock, ManualClock)
    versions = []
    for step in range(4):
        ingest(lake, sim, PRODUCTS)
        report = transform(lake)
        versions.append(report.table_version_after)
        if step:
            # only the files ingest wrote since the last transform were read
            assert 0 < report.raw_trades < 20_000
        assert_table_matches_truth(lake, sim, PRODUCTS)
        sim.clock.advance(900)
    assert versions == sorted(set(versions))  # one commit per run
    again = transform(lake)
    assert again.products == [] and again.table_version_after == versions[-1]  # nothing new: no commit


def test_rebuild_reproduces_the_table_and_keeps_history(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, PRODUCTS)
    first = transform(lake)
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(600)
    ingest(lake, sim, PRODUCTS)
    transform(lake)
    before = table_rows(lake)
    rebuilt = transform(lake, rebuild=True)
    assert rebuilt.rebuild and rebuilt.rows_written == len(before)
    assert table_rows(lake) == before  # ingest_ts comes from raw metadata: identical rows
    assert_table_matches_truth(lake, sim, PRODUCTS)
    # the version before the rebuild is still readable (time travel)
    assert len(table_rows(lake, version=first.table_version_after)) == first.rows_written


def test_overlapping_raw_files_are_deduplicated(lake: LakeRef, sim: Simulator) -> None:
    from schemahub.raw import files
    from schemahub.raw.layout import RawKey
    from schemahub.sources.base import RawTrade
    from schemahub.timeutil import from_us, iso_to_us
    from tests.helpers import raw_files

    ingest(lake, sim, ["BTC-USD"])
    transform(lake)
    # A raw file on another chunk grid (as after a checkpoint was rebuilt and an older start
    # re-ingested): ids 500..1499 of the stream, overlapping two existing files.
    existing = raw_files(lake, "BTC-USD")
    records = sorted((r for _, _, recs in existing for r in recs), key=lambda r: int(r["trade_id"]))
    start = int(records[0]["trade_id"])
    chosen = [r for r in records if start + 499 <= int(r["trade_id"]) <= start + 1498]
    header = existing[0][1].model_copy(update={
        "covers_after_id": start + 498, "covers_through_id": start + 1498,
        "first_trade_id": int(chosen[0]["trade_id"]), "last_trade_id": int(chosen[-1]["trade_id"]),
        "trade_count": len(chosen), "missing_ids": [],
        "first_trade_time": from_us(iso_to_us(chosen[0]["time"])),
        "last_trade_time": from_us(iso_to_us(chosen[-1]["time"]))})
    key = RawKey("coinbase", header.symbol, header.first_trade_time.date(),  # type: ignore[arg-type]
                 header.first_trade_id, header.last_trade_id)
    trades = [RawTrade(int(r["trade_id"]), r) for r in chosen]
    lake.storage().create(key.key, files.encode(header, trades))

    rebuilt = transform(lake, rebuild=True)
    assert rebuilt.products[0].duplicates_dropped == len(chosen)
    assert_table_matches_truth(lake, sim, ["BTC-USD"])


def test_concurrent_transforms_commit_exactly_once(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, PRODUCTS)
    reports: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(transform(lake))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_table_matches_truth(lake, sim, PRODUCTS)
    # The transforms may share the products (each leases what it commits) or one may take them
    # all: either way every row is written by exactly one of them.
    written = [r.rows_written for r in reports]  # type: ignore[attr-defined]
    assert sum(written) == len(table_rows(lake))


def test_dry_run_writes_nothing(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, PRODUCTS)
    report = transform(lake, dry_run=True)
    assert report.dry_run and report.raw_trades > 0
    assert lake_keys(lake, "table/") == [] and lake_keys(lake, "state/transform/") == []


def test_compaction_keeps_every_row_and_vacuum_has_a_guard(lake: LakeRef, sim: Simulator) -> None:
    from schemahub import pipeline
    from schemahub.errors import ConfigError
    from tests.helpers import settings

    assert isinstance(sim.clock, ManualClock)
    for _ in range(3):  # several incremental commits -> small files
        ingest(lake, sim, PRODUCTS)
        transform(lake)
        sim.clock.advance(900)
    before = table_rows(lake)
    files_before = len(delta_table(lake).file_uris())
    result = pipeline.compact(settings(lake, None), target_size=256 * 1024**2, zorder=False,
                              vacuum=False, retain_hours=168, dry_run_vacuum=False)
    assert result.version_after == result.version_before + 1
    assert len(delta_table(lake).file_uris()) < files_before
    assert table_rows(lake) == before
    assert_table_matches_truth(lake, sim, PRODUCTS)
    with pytest.raises(ConfigError, match="guard"):
        pipeline.compact(settings(lake, None), target_size=1024, zorder=False, vacuum=True,
                         retain_hours=0, dry_run_vacuum=False)
    assert_lake_matches_truth(lake, sim, "BTC-USD")
