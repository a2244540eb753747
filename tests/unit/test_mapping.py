"""YAML mappings: validation errors name the file and the line; the engine converts exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from schemahub.errors import MappingError
from schemahub.raw.layout import RawKey
from schemahub.table.delta import Cursor
from schemahub.transform import engine
from schemahub.transform.mapping import load_mapping, packaged, parse_mapping
from schemahub.transform.plan import Watermark, overlap_groups, select_files
from schemahub.transform.schema import SCHEMA, markdown_table

GOOD = """\
mapping_version: 1
exchange: coinbase
endpoint: trades
fields:
  exchange: {const: coinbase}
  symbol: {context: symbol}
  trade_id: {path: trade_id, type: string}
  id_kind: {const: trade}
  side: {path: side, type: string, map: {buy: sell, sell: buy}}
  price: {path: price, type: decimal}
  quantity: {path: size, type: decimal}
  trade_ts: {path: time, type: timestamp, format: iso8601}
  ingest_ts: {context: fetched_at}
"""


def test_the_packaged_coinbase_mapping_is_valid() -> None:
    mapping = packaged("coinbase")
    assert mapping.key == "coinbase.trades" and mapping.fields["side"].map == {"buy": "sell", "sell": "buy"}
    assert mapping.paths() == {"trade_id": "trade_id", "side": "side", "price": "price",
                               "quantity": "size", "trade_ts": "time"}


@pytest.mark.parametrize(("text", "line", "message"), [
    (GOOD.replace("  price: {path: price, type: decimal}\n",
                  "  price: {path: price, type: decimal, scale: 2}\n"), 10, "unknown key 'scale'"),
    (GOOD.replace("mapping_version: 1", "mapping_version: one"), 1, "mapping_version"),
    (GOOD.replace("  quantity: {path: size, type: decimal}\n", ""), 4, "missing unified column(s): quantity"),
    (GOOD.replace("endpoint: trades\n", ""), None, "missing required key 'endpoint'"),
    (GOOD.replace("type: timestamp, format: iso8601", "type: timestamp"), 12, "needs a format"),
    (GOOD.replace("{path: price, type: decimal}", "{path: price, const: '1'}"), 10, "exactly one of"),
    (GOOD.replace("path: size,", "path: 'size; DROP TABLE x',"), 11, "is not a key"),
    (GOOD.replace("{path: price, type: decimal}", "{path: price, type: string}"), 10, "type must be decimal"),
    (GOOD + "  volume: {path: v, type: decimal}\n", 14, "unknown column(s): volume"),
    (GOOD.replace("fields:", "fields: [oops"), 5, "not valid YAML"),
    (GOOD.replace("exchange: coinbase\n", "exchange: ../x\n", 1), 2, "invalid exchange name"),
    (GOOD.replace("map: {buy: sell, sell: buy}", "sign: {positive: buy}"), 9,
     "names both positive and negative"),
    (GOOD.replace("{path: price, type: decimal}", "{path: price, type: decimal, sign: {positive: a}}"),
     10, "sign applies to string fields"),
    (GOOD.replace("map: {buy: sell, sell: buy}", "absolute: true"), 9, "absolute applies to decimal fields"),
])
def test_invalid_mappings_name_file_and_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(MappingError) as info:
        parse_mapping(text, "mappings/x.trades.yaml")
    assert message in str(info.value)
    expected_where = f"mappings/x.trades.yaml:{line}:" if line else "mappings/x.trades.yaml:"
    assert str(info.value).startswith(expected_where), str(info.value)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    evil = "mapping_version: !!python/object/apply:os.system ['true']"
    path.write_text(GOOD.replace("mapping_version: 1", evil))
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(path)


def _raw(**columns: list[object]) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {"file_id": pa.array([0] * n, pa.int32()), "ctx.symbol": ["BTC-USD"] * n,
            "ctx.exchange": ["coinbase"] * n, "ctx.fetched_at": ["2026-11-27T01:00:00.123456+00:00"] * n}
    return pa.table({**base, **{f"src.{k}": pa.array(v, pa.string()) for k, v in columns.items()}})


def test_engine_converts_to_the_unified_schema_exactly() -> None:
    raw = _raw(trade_id=["1", "2", "3"], side=["buy", "sell", "buy"], price=["64000.12", "1e3", ".5"],
               quantity=["0.00000001", "2", "3.5"],
               trade_ts=["2024-03-13T11:00:17.710679Z", "2024-03-13T11:00:17.71Z", "2024-03-13T11:00:17Z"])
    applied = engine.apply(packaged("coinbase"), raw)
    assert applied.rejected == {}
    assert applied.table.schema == SCHEMA
    rows = applied.table.to_pylist()
    assert [r["side"] for r in rows] == ["sell", "buy", "sell"]  # maker -> taker
    assert [r["price"] for r in rows] == [64000.12, 1000.0, 0.5]
    assert [r["trade_ts"].microsecond for r in rows] == [710679, 710000, 0]
    assert rows[0]["ingest_ts"] == datetime(2026, 11, 27, 1, 0, 0, 123456, tzinfo=UTC)
    assert rows[0]["trade_date"] == date(2024, 3, 13) and rows[0]["exchange"] == "coinbase"


def test_every_time_format() -> None:
    for fmt, value in (("epoch_ms", "1710327617710"), ("epoch_us", "1710327617710679"),
                       ("epoch_ns", "1710327617710679123"), ("epoch_s", "1710327617.710679")):
        text = GOOD.replace("{path: time, type: timestamp, format: iso8601}",
                            f"{{path: time, type: timestamp, format: {fmt}}}")
        mapping = parse_mapping(text, "x.yaml")
        raw = _raw(trade_id=["1"], side=["buy"], price=["1"], quantity=["1"], trade_ts=[value])
        (row,) = engine.apply(mapping, raw).table.to_pylist()
        expected = 710000 if fmt == "epoch_ms" else 710679
        assert row["trade_ts"] == datetime(2024, 3, 13, 11, 0, 17, expected, tzinfo=UTC), fmt


def test_a_side_from_a_sign_and_a_quantity_from_its_absolute_value() -> None:
    text = GOOD.replace("{path: side, type: string, map: {buy: sell, sell: buy}}",
                        "{path: size, type: string, sign: {positive: buy, negative: sell}}")
    text = text.replace("{path: size, type: decimal}", "{path: size, type: decimal, absolute: true}")
    mapping = parse_mapping(text, "x.yaml")
    raw = _raw(trade_id=["1", "2", "3"], price=["1", "1", "1"], size=["0.5", "-1.9983e-4", "0"],
               trade_ts=["2024-03-13T11:00:17Z"] * 3)
    raw = raw.set_column(0, "file_id", pa.array([1, 1, 2], pa.int32()))
    raw = raw.append_column("src.side", raw["src.size"]).rename_columns(
        ["src.quantity" if n == "src.size" else n for n in raw.column_names] + ["src.side"])
    applied = engine.apply(mapping, raw)
    rows = applied.table.to_pylist()
    assert [(r["side"], r["quantity"]) for r in rows] == [("buy", 0.5), ("sell", 0.00019983)]
    assert applied.rejected[2].describe().endswith("side '0' is not a non-zero signed number")


def test_a_file_with_a_bad_row_is_rejected_whole_with_its_first_problem() -> None:
    raw = _raw(trade_id=["1", "2", "3", "4"], side=["buy", "hold", "sell", "buy"],
               price=["1", "2", "abc", "4"], quantity=["1", "1", "1", None],
               trade_ts=["2024-03-13T11:00:17Z"] * 4)
    raw = raw.set_column(0, "file_id", pa.array([7, 7, 8, 9], pa.int32()))
    applied = engine.apply(packaged("coinbase"), raw)
    assert applied.table.num_rows == 0
    assert {k: (v.row, v.column, v.value) for k, v in applied.rejected.items()} == {
        7: (1, "side", "hold"), 8: (2, "price", "abc"), 9: (3, "quantity", None)}
    assert applied.rejected[7].describe(line=3) == "line 3: side 'hold' is not one of buy, sell"


def test_unique_trades_keeps_the_first_fetch() -> None:
    table = pa.table({"trade_id": ["2", "1", "2"], "ingest_ts": [3, 1, 2]})
    kept, dropped = engine.unique_trades(table)
    assert dropped == 1 and sorted(kept.to_pylist(), key=lambda r: r["trade_id"]) == [
        {"trade_id": "1", "ingest_ts": 1}, {"trade_id": "2", "ingest_ts": 2}]


def _key(first: int, last: int) -> RawKey:
    return RawKey("coinbase", "BTC-USD", date(2026, 1, 1), first, last)  # type: ignore[arg-type]


def test_file_selection_takes_committed_files_outside_the_transformed_window() -> None:
    keys = [_key(1, 1000), _key(1001, 2000), _key(2001, 3000), _key(3001, 3500)]
    quarantined = {_key(2001, 3000).key}
    chosen, skipped = select_files(keys, Watermark(0, 3000), Cursor(0, 1000), quarantined)
    assert chosen == [_key(1001, 2000)] and skipped == 1  # 3001.. is above the ingest watermark
    # a start moved earlier (older history backfilled) brings in the files below the window
    history = [_key(1, 500), _key(501, 1500), _key(1501, 3000)]
    chosen, _ = select_files(history, Watermark(0, 3000), Cursor(500, 3000), set())
    assert chosen == [_key(1, 500)]


def test_overlapping_files_stay_in_one_read_group() -> None:
    keys = [_key(1, 1000), _key(1001, 2000), _key(1500, 2500), _key(2501, 3000), _key(3001, 4000)]
    groups = overlap_groups(keys, max_files=1)
    assert groups == [[_key(1, 1000)], [_key(1001, 2000), _key(1500, 2500)], [_key(2501, 3000)],
                      [_key(3001, 4000)]]


def test_schema_docs_match_the_schema_module() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "SCHEMA.md").read_text()
    assert markdown_table() in docs
