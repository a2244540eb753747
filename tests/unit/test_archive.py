"""Archive planning, checksum files, CSV inspection and coverage stretches: pure, on crafted files."""

from __future__ import annotations

import re
import zipfile
from datetime import date
from pathlib import Path

import pytest

from schemahub.errors import ArchiveError, MappingError
from schemahub.ingest.archived import segments
from schemahub.raw.files import ArchiveRef, RawHeader
from schemahub.sources.archive import CsvFacts, Period, inspect, lookup_times, parse_checksum, plan_periods
from schemahub.sources.binance_archive import BinanceArchive
from schemahub.transform import archives
from schemahub.transform.mapping import packaged, parse_mapping

LAYOUT = BinanceArchive.layouts["trades"]
DAY = Period(date(2024, 3, 5), "daily")
DAY_US = 1_709_596_800_000  # 2024-03-05 00:00 UTC in ms


def _zip(tmp_path: Path, lines: list[str], name: str = "BTCUSDT-trades-2024-03-05") -> Path:
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}.csv", "".join(line + "\n" for line in lines))
    return path


def _row(trade_id: int, ms: int, maker: str = "True") -> str:
    return f"{trade_id},64000.10000000,0.01000000,640.00100000,{ms},{maker},True"


def test_whole_months_become_monthly_files_and_the_days_around_them_daily() -> None:
    periods = plan_periods(date(2024, 1, 30), date(2024, 4, 2))
    assert [p.label for p in periods] == ["2024-01-30", "2024-01-31", "2024-02", "2024-03", "2024-04-01",
                                          "2024-04-02"]
    assert [p.label for p in plan_periods(date(2024, 2, 1), date(2024, 2, 28))] == [
        f"2024-02-{d:02d}" for d in range(1, 29)]  # February 2024 has 29 days: not whole
    assert plan_periods(date(2024, 2, 1), date(2024, 2, 29))[0].label == "2024-02"
    assert len(plan_periods(date(2024, 2, 1), date(2024, 2, 29), monthly=False)) == 29
    assert Period(date(2024, 12, 1), "monthly").end == date(2025, 1, 1)
    assert [p.label for p in Period(date(2024, 2, 1), "monthly").days()][-1] == "2024-02-29"


def test_checksum_files_are_read_strictly() -> None:
    digest = "a" * 64
    name = "BTCUSDT-trades-2024-03-05.zip"
    assert parse_checksum(f"{digest}  {name}".encode(), name) == digest
    assert parse_checksum(f"{digest.upper()}  x.zip\n".encode(), "x.zip") == digest
    with pytest.raises(ArchiveError, match=re.escape("not '<sha256>  y.zip'")):
        parse_checksum(f"{digest}  x.zip".encode(), "y.zip")
    with pytest.raises(ArchiveError):
        parse_checksum(b"<html>not found</html>", "x.zip")


def test_inspection_finds_ids_times_and_holes(tmp_path: Path) -> None:
    path = _zip(tmp_path, [_row(10, DAY_US + 5), _row(11, DAY_US + 6), _row(15, DAY_US + 9),
                           _row(16, DAY_US + 86_399_999)])
    facts = inspect(path, path.name, LAYOUT, DAY)
    assert (facts.rows, facts.first_id, facts.last_id) == (4, 10, 16)
    assert facts.in_order and not facts.header
    assert facts.missing == [(12, 14)]
    assert (facts.time_unit, facts.first_time_us, facts.last_time_us) == ("ms", (DAY_US + 5) * 1000,
                                                                          (DAY_US + 86_399_999) * 1000)
    assert lookup_times(path, path.name, LAYOUT, DAY, {15}) == {15: (DAY_US + 9) * 1000}


def test_rows_out_of_order_and_repeated_are_counted_not_assumed(tmp_path: Path) -> None:
    header = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"
    path = _zip(tmp_path, [header, _row(13, DAY_US + 3, "true"), _row(10, DAY_US + 1, "false"),
                           _row(13, DAY_US + 3), _row(11, DAY_US + 2)])
    facts = inspect(path, path.name, LAYOUT, DAY)
    assert facts.header and not facts.in_order
    assert (facts.first_id, facts.last_id, facts.duplicates, facts.missing) == (10, 13, 1, [(12, 12)])


@pytest.mark.parametrize(("value", "message"), [
    (1_709_596_800_000_123, "16 digits, but a file of 2024-03-05 must carry milliseconds"),
    (DAY_US - 1, "lies outside 2024-03-05"),
    (DAY_US + 86_400_000, "lies outside 2024-03-05"),
])
def test_times_are_checked_against_the_file_date(tmp_path: Path, value: int, message: str) -> None:
    path = _zip(tmp_path, [_row(1, DAY_US + 1), _row(2, value)])
    with pytest.raises(ArchiveError, match=message):
        inspect(path, path.name, LAYOUT, DAY)


def test_from_2025_times_must_be_microseconds(tmp_path: Path) -> None:
    day = Period(date(2025, 1, 1), "daily")
    start = 1_735_689_600_000_000
    good = _zip(tmp_path, [_row(1, start + 10_866)], "BTCUSDT-trades-2025-01-01")
    assert inspect(good, good.name, LAYOUT, day).time_unit == "us"
    bad = _zip(tmp_path, [_row(1, start // 1000 + 10)], "BTCUSDT-trades-2025-01-02")
    with pytest.raises(ArchiveError, match="13 digits, but a file of 2025-01-01 must carry microseconds"):
        inspect(bad, bad.name, LAYOUT, day)


def test_broken_archives_are_refused_by_name(tmp_path: Path) -> None:
    garbage = tmp_path / "x.zip"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArchiveError, match=r"x\.zip is not a readable zip"):
        inspect(garbage, "x.zip", LAYOUT, DAY)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.csv", _row(1, DAY_US))
        zf.writestr("b.csv", _row(2, DAY_US))
    with pytest.raises(ArchiveError, match=r"should hold one CSV file, it holds a\.csv, b\.csv"):
        inspect(two, "two.zip", LAYOUT, DAY)
    text = _zip(tmp_path, [_row(1, DAY_US), "2,64000.1,0.01,640,not-a-time,True,True"], "text")
    with pytest.raises(ArchiveError, match=r"text\.zip"):
        inspect(text, "text.zip", LAYOUT, DAY)


def test_a_file_is_covered_in_stretches_around_the_ids_it_leaves_out() -> None:
    facts = CsvFacts(first_id=10, last_id=40, missing=[(15, 17), (30, 30)])
    assert [(s.after_id, s.through_id, s.trades) for s in segments(facts, 0, 40)] == [
        (9, 14, 5), (17, 29, 12), (30, 40, 10)]
    # Already covered up to 20, and only up to 35 wanted.
    assert [(s.after_id, s.through_id) for s in segments(facts, 20, 35)] == [(20, 29), (30, 35)]
    # A cut inside a hole: the stretch starts after it (REST covers the hole).
    assert [(s.after_id, s.through_id) for s in segments(facts, 15, 40)] == [(17, 29), (30, 40)]


def test_archive_mappings_read_the_columns_the_archive_source_inspects() -> None:
    for dataset, layout in BinanceArchive.layouts.items():
        mapping = packaged("binance", BinanceArchive.mappings[dataset])
        assert mapping.record == "csv" and tuple(mapping.columns or ()) == layout.columns
        assert mapping.fields["trade_id"].path == layout.id_column
        assert mapping.fields["trade_ts"].path == layout.time_column


def test_csv_mappings_name_their_columns() -> None:
    base = ("mapping_version: 1\nexchange: binance\nendpoint: x\nrecord: csv\n{columns}fields:\n"
            "  exchange: {{const: binance}}\n  symbol: {{context: symbol}}\n"
            "  trade_id: {{path: {id}, type: string}}\n  id_kind: {{const: trade}}\n  side: {{const: buy}}\n"
            "  price: {{path: p, type: decimal}}\n  quantity: {{path: p, type: decimal}}\n"
            "  trade_ts: {{path: t, type: timestamp, format: epoch}}\n  ingest_ts: {{context: fetched_at}}\n")
    parsed = parse_mapping(base.format(columns="columns: [id, p, t]\n", id="id"), "m.yaml")
    assert parsed.columns == ["id", "p", "t"]
    with pytest.raises(MappingError, match="needs the file's columns"):
        parse_mapping(base.format(columns="", id="id"), "m.yaml")
    with pytest.raises(MappingError, match="path 'nope' is not one of the columns"):
        parse_mapping(base.format(columns="columns: [id, p, t]\n", id="nope"), "m.yaml")


@pytest.mark.parametrize(("after", "through"), [(0, 100), (7, 100)], ids=["whole file", "part of it"])
def test_archive_ids_reach_the_table_spelled_as_rest_spells_them(tmp_path: Path, after: int,
                                                                 through: int) -> None:
    """A record covering its whole file reads ids as text (no number round trip); a padded
    id must still become the key a REST row of that trade has, or the table would hold both."""
    path = _zip(tmp_path, ["0007,64000.1,0.01,640.001,1709596800000,True,True",
                           _row(8, DAY_US + 1), _row(12, DAY_US + 2)])
    ref = ArchiveRef.model_construct(filename=path.name, header_row=False, id_base=0, named_columns=False,
                                     file_first_id=7, file_last_id=12)
    header = RawHeader.model_construct(covers_after_id=after, covers_through_id=through, archive=ref)
    mapping = packaged("binance", "archive_trades")
    ids = [i for part in archives.tables(path, header, mapping) for i in part["src.trade_id"].to_pylist()]
    assert [str(i) for i in ids] == (["7", "8", "12"] if after == 0 else ["8", "12"])
