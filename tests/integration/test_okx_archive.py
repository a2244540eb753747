"""OKX's daily archives: UTC+8 days, a header, no checksum; REST for the rest, exactly once.

The simulator serves OKX's archive layout from the same trades as its REST API (the REST
trade ids, sizes below 1e-4 in scientific notation). Every test compares the raw layer
and the table with the simulator's ground truth, row by row.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from schemahub.ingest.report import Status
from schemahub.simulator.archive import ArchiveFaults
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.server import Faults, Simulator
from schemahub.timeutil import from_us
from tests.conftest import SimFactory
from tests.helpers import (
    assert_lake_matches_truth,
    assert_table_matches_truth,
    checkpoint,
    ingest,
    raw_files,
    transform,
)
from tests.lakes import LakeLike, LakeRef

SYMBOL = "BTC-USDT"
# About 4.6 days of trades before the simulator's clock (2026-11-20 12:00 UTC), 1 in 500 ids skipped;
# small sizes, so that the archive writes some in scientific notation.
SPEC = replace(simulator_class("okx").test_products[0], trades_per_s=0.05, history=20_000, mean_size=0.0004)


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


def _sim(make_sim: SimFactory, archive: ArchiveFaults | None = None) -> Simulator:
    return make_sim(products=[SPEC], exchange="okx", faults=Faults(rate_limit=False, archive=archive or
                                                                   ArchiveFaults()))


def _sources(lake: LakeLike) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    archive: list[tuple[int, int]] = []
    rest: list[tuple[int, int]] = []
    for _, header, _ in raw_files(lake, SYMBOL, "okx"):
        span = (header.covers_after_id, header.covers_through_id)
        (archive if header.archive is not None and header.trade_count else rest).append(span)
    return sorted(archive), sorted(rest)


def _assert_exact(lake: LakeLike, sim: Simulator) -> None:
    assert_lake_matches_truth(lake, sim, SYMBOL)
    transform(lake)
    assert_table_matches_truth(lake, sim, [SYMBOL])


def test_utc8_archive_days_then_rest_meet_exactly(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto")
    item = report.products[0]
    assert item.status is Status.OK, item.error
    assert item.archive_files > 0
    archive, rest = _sources(lake)
    market = sim.market(SYMBOL)
    trades = market.trades(0, market.visible(sim.now_us()))
    # OKX's file dated 11-20 covers 11-19 16:00 -> 11-20 16:00 UTC: not over at the clock's
    # 11-20 12:00, so the archive ends with the file dated 11-19, at 11-19 16:00 UTC.
    last_archived = max(through for _, through in archive)
    by_id = {t.trade_id: t for t in trades}
    boundary = _us("2026-11-19T16:00:00")
    assert by_id[last_archived].time_us < boundary
    assert min(t.trade_id for t in trades if t.time_us >= boundary) > last_archived
    # ... and REST takes over at the very next id, to the head.
    assert any(after == last_archived for after, _ in rest)
    assert checkpoint(lake, SYMBOL, "okx").last_trade_id == trades[-1].trade_id
    # The zips are named by OKX's day, and the first covers from 11-15 16:00 UTC (--since 11-16
    # 00:00 UTC is inside the file dated 11-16).
    zips = sorted({h.archive.filename for _, h, _ in raw_files(lake, SYMBOL, "okx") if h.archive})
    assert zips == [f"BTC-USDT-trades-2026-11-{day}.zip" for day in (16, 17, 18, 19)]
    _assert_exact(lake, sim)  # sizes in scientific notation included: row by row


def test_an_unknown_header_is_refused_and_rest_covers_that_day(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim, ArchiveFaults(header=frozenset({"2026-11-17"}), corrupt={"2026-11-18": 1}))
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto")
    item = report.products[0]
    assert item.status is Status.OK, item.error
    # 11-17's file (the old bilingual header) is not used, named in the report; 11-18's damaged
    # first download (a flipped byte: no checksum here, the zip's CRC catches it) is fetched again.
    assert [f.split(":")[0] for f in item.archive_fallbacks] == ["2026-11-17"]
    assert "header" in item.archive_fallbacks[0]
    assert sim.api.archive is not None
    damaged = "/cdn/okex/traderecords/trades/daily/20261118/BTC-USDT-trades-2026-11-18.zip"
    assert sim.api.archive.served(damaged) == 2
    names = {h.archive.filename for _, h, _ in raw_files(lake, SYMBOL, "okx") if h.archive}
    assert "BTC-USDT-trades-2026-11-17.zip" not in names and "BTC-USDT-trades-2026-11-18.zip" in names
    _assert_exact(lake, sim)


def test_archive_only_backward_extension_and_the_day_boundary(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-19T06:00:00"), source="rest")
    before = checkpoint(lake, SYMBOL, "okx")
    transform(lake)
    report = ingest(lake, sim, [SYMBOL], since_us=_us("2026-11-16"), source="auto")
    item = report.products[0]
    assert item.status is Status.OK, item.error
    after = checkpoint(lake, SYMBOL, "okx")
    assert after.start_after_id < before.start_after_id and after.backfill is None
    assert after.first_trade_time is not None and after.first_trade_time >= from_us(_us("2026-11-16"))
    archive, _ = _sources(lake)
    assert archive and max(through for _, through in archive) <= before.start_after_id
    _assert_exact(lake, sim)
