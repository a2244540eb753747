"""Apply a mapping to raw columns: pure (no I/O, no clock) and vectorized (Arrow compute).

Input: an Arrow table with one text column per mapped path (``src.<column>``, the raw
value as the JSON text DuckDB read), the raw file's context (``ctx.symbol``,
``ctx.exchange``, ``ctx.fetched_at``, ``ctx.time_unit``) and ``file_id`` for error reports.
Output: the rows in the unified schema, and the files that had a bad row. A file with a
bad row (missing field, wrong type, unmapped value) is rejected as a whole: a partial
file in the table would be harder to notice and to repair than a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from schemahub.errors import MappingError
from schemahub.transform.mapping import FieldSpec, TradeMapping
from schemahub.transform.schema import SCHEMA, UTC_MICROS

_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INTEGER = r"^[+-]?[0-9]{1,19}$"
_ISO8601 = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
            r"(Z|[+-][0-9]{2}:?[0-9]{2})$")
_TRADE_ID = r"^[A-Za-z0-9._:-]{1,64}$"
_EPOCH_TO_US = {"epoch_ms": 1_000, "epoch_us": 1, "epoch_ns": None}
_UNIT_TO_US = {"s": (1_000_000, 1), "ms": (1_000, 1), "us": (1, 1), "ns": (1, 1_000)}
"""time unit -> (multiply, divide) to reach microseconds."""


@dataclass(frozen=True)
class Rejected:
    """Why a raw file was rejected: its first bad value."""

    file_id: int
    row: int
    """Index of the bad row in the engine's input (its line, when the input is one file)."""
    column: str
    value: str | None
    reason: str

    def describe(self, line: int | None = None) -> str:
        shown = "missing" if self.value is None else repr(self.value[:60])
        where = f"line {line}: " if line is not None else ""
        return f"{where}{self.column} {shown} {self.reason}"


@dataclass(frozen=True)
class Applied:
    table: pa.Table
    rejected: dict[int, Rejected]
    """file_id -> the first problem found in that file."""


def apply(mapping: TradeMapping, raw: pa.Table) -> Applied:
    """Convert ``raw`` to unified rows; files with any bad row are left out and reported."""
    n = raw.num_rows
    columns: dict[str, pa.Array] = {}
    problems: list[tuple[str, pa.Array, pa.Array, str]] = []
    for name, spec in mapping.fields.items():
        source = _source(spec, name, raw, n)
        value, invalid, reason = _convert(name, spec, source, raw)
        columns[name] = value
        if pc.any(invalid).as_py():
            problems.append((name, source, invalid, reason))
    rejected = _rejections(raw, problems)
    if rejected:
        keep = pc.invert(pc.is_in(raw["file_id"], value_set=pa.array(list(rejected), raw["file_id"].type)))
    else:
        keep = None
    out = pa.table({**columns, "trade_date": pc.cast(columns["trade_ts"], pa.date32())})
    if keep is not None:
        out = out.filter(keep)
    return Applied(out.select(SCHEMA.names).cast(SCHEMA), rejected)


def _source(spec: FieldSpec, name: str, raw: pa.Table, n: int) -> pa.Array:
    if spec.path is not None:
        return _chunks(raw[f"src.{name}"])
    if spec.context is not None:
        return _chunks(raw[f"ctx.{spec.context}"])
    assert spec.const is not None
    return constant(pa.scalar(spec.const, pa.string()), n)


_CONSTANTS: dict[pa.Scalar, pa.Array] = {}
_CONSTANT_ROWS = 1 << 21
"""The longest constant column kept (a few MB each; longer ones are built each time)."""


def constant(value: pa.Scalar, n: int) -> pa.Array:
    """``value`` repeated ``n`` times. Built once and sliced (zero-copy) afterwards: a context or
    constant column was ~10 % of an archive transform when it was repeated anew per table."""
    if n > _CONSTANT_ROWS:
        return pa.repeat(value, n)
    built = _CONSTANTS.get(value)
    if built is None or len(built) < n:
        # An eighth more than asked: a file's later tables are a block or so longer than its
        # first, and a small file's values (its id, its fetch time) get a small array.
        built = pa.repeat(value, n + n // 8)
        if len(_CONSTANTS) >= 16:  # a file's context values: few at a time, ~2 MB each; bounded
            _CONSTANTS.clear()
        _CONSTANTS[value] = built
    return built.slice(0, n)


def _chunks(column: pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def _convert(name: str, spec: FieldSpec, text: pa.Array, raw: pa.Table) -> tuple[pa.Array, pa.Array, str]:
    """(converted values, invalid mask, reason) for one column."""
    kind = spec.type if spec.context != "fetched_at" else "timestamp"
    if pa.types.is_timestamp(text.type):  # context the reader already typed
        return pc.cast(text, UTC_MICROS), pc.is_null(text), "is missing"
    if kind == "string":
        return _string(name, spec, text)
    if kind == "decimal":
        value, valid = _parse(text, pa.float64(), _DECIMAL)
        valid = pc.and_(valid, pc.is_finite(pc.fill_null(value, 0.0)))
        return pc.abs(value) if spec.absolute else value, pc.invert(valid), "is not a decimal number"
    if kind == "integer":
        value, valid = _parse(text, pa.int64(), _INTEGER)
        return value, pc.invert(valid), "is not an integer"
    return _timestamp(spec, text, raw)


def _string(name: str, spec: FieldSpec, text: pa.Array) -> tuple[pa.Array, pa.Array, str]:
    if spec.sign is not None:
        return _signed(spec.sign, text)
    if pa.types.is_boolean(text.type) and spec.map is not None:  # a CSV reader's booleans
        return _mapped_boolean(spec.map, text)
    if pa.types.is_integer(text.type):  # an id a CSV reader read as a number: digits already
        return pc.cast(text, pa.string()), pc.is_null(text), "is missing"
    if name == "trade_id":
        # Numeric ids (most exchanges) pass a cheap digit check; only others meet the regex.
        digits = pc.fill_null(pc.utf8_is_digit(text), False)
        valid = digits if pc.all(digits).as_py() else pc.or_(digits, _matches(text, _TRADE_ID))
        reason = "is not a valid trade id"
    else:
        valid = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False)
        reason = "is empty"
    value = text
    if spec.map is not None:
        keys = pa.array(list(spec.map), pa.string())
        index = pc.index_in(text, value_set=keys)
        value = pc.take(pa.array(list(spec.map.values()), pa.string()), index)
        valid = pc.and_(valid, pc.is_valid(index))
        reason = f"is not one of {', '.join(spec.map)}"
    return value, pc.invert(valid), reason


def _signed(names: Mapping[str, str], text: pa.Array) -> tuple[pa.Array, pa.Array, str]:
    """A side from the sign of a signed number (its text or a number column)."""
    number, valid = _parse(text if pa.types.is_floating(text.type) else pc.cast(text, pa.string()),
                           pa.float64(), _DECIMAL)
    sign = pc.sign(pc.fill_null(number, 0.0))
    valid = pc.and_(valid, pc.not_equal(sign, 0.0))
    value = pc.if_else(pc.greater(sign, 0.0), names["positive"], names["negative"])
    return value, pc.invert(valid), "is not a non-zero signed number"


def _mapped_boolean(mapping: dict[str, str], flags: pa.Array) -> tuple[pa.Array, pa.Array, str]:
    """A value map over True/False (however the file spelled them), without text."""
    values: dict[bool, set[str]] = {}
    for key, value in mapping.items():
        values.setdefault(key.lower() == "true", set()).add(value)
    if set(values) != {True, False} or any(len(v) != 1 for v in values.values()):
        raise MappingError(f"a map over true/false needs one value for each: {mapping}", path="mapping",
                           line=None)
    value = pc.if_else(flags, values[True].pop(), values[False].pop())
    return value, pc.is_null(flags), "is not true or false"


def _parse(text: pa.Array, to: pa.DataType, pattern: str) -> tuple[pa.Array, pa.Array]:
    """(values, valid mask). Casts the whole column at once - the fast path for clean data;
    only when that fails does a regex find the bad values (they are rejected, not guessed).
    A column the reader already typed (CSV) passes as it is."""
    if text.type == to:
        return text, pc.is_valid(text)
    try:
        return pc.cast(text, to), pc.is_valid(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        valid = _matches(text, pattern)
        try:
            return pc.cast(pc.if_else(valid, text, None), to), valid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # the pattern let through what Arrow refuses
            return pa.nulls(len(text), to), pc.fill_null(pc.is_null(text), False)


def _timestamp(spec: FieldSpec, text: pa.Array, raw: pa.Table) -> tuple[pa.Array, pa.Array, str]:
    fmt = spec.format or "iso8601"
    if fmt == "epoch":  # the unit the raw file declares, per row (files may differ)
        units = _chunks(raw["ctx.time_unit"]) if "ctx.time_unit" in raw.column_names else None
        units = pc.fill_null(units, "ms") if units is not None else pc.fill_null(
            pa.nulls(len(text), pa.string()), "ms")
        number, valid = _parse(text, pa.int64(), _INTEGER)
        keys = pa.array(list(_UNIT_TO_US), pa.string())
        index = pc.index_in(units, value_set=keys)
        multiply = pc.take(pa.array([m for m, _ in _UNIT_TO_US.values()], pa.int64()), index)
        divide = pc.take(pa.array([d for _, d in _UNIT_TO_US.values()], pa.int64()), index)
        micros = pc.divide(pc.multiply(number, multiply), divide)
        valid = pc.and_(valid, pc.is_valid(index))
        return pc.cast(micros, UTC_MICROS), pc.invert(valid), "is not an epoch in the file's time unit"
    if fmt == "iso8601":
        parsed, valid = _parse(text, pa.timestamp("ns", tz="UTC"), _ISO8601)
        value = pc.cast(parsed, UTC_MICROS, safe=False)  # sub-microsecond digits are dropped
        return value, pc.invert(valid), "is not an ISO-8601 time"
    if fmt == "epoch_s":
        # From the decimal text, truncated to µs: a float64 cannot hold 1762820035.9822779
        # exactly, and rounding a product of floats can land on the next microsecond.
        valid = _matches(text, r"^[0-9]{1,12}(\.[0-9]+)?$")
        clean = pc.if_else(valid, text, "0.0")
        dotted = pc.if_else(pc.match_substring(clean, "."), clean,
                            pc.binary_join_element_wise(clean, ".0", ""))
        parts = pc.split_pattern(dotted, ".", max_splits=1)
        whole = pc.cast(pc.list_element(parts, 0), pa.int64())
        padded = pc.binary_join_element_wise(pc.list_element(parts, 1), "000000", "")
        six = pc.utf8_slice_codeunits(padded, 0, 6)
        micros = pc.if_else(valid, pc.add(pc.multiply(whole, 1_000_000), pc.cast(six, pa.int64())), None)
        return pc.cast(micros, UTC_MICROS), pc.invert(valid), "is not epoch seconds"
    number, valid = _parse(text, pa.int64(), _INTEGER)
    factor = _EPOCH_TO_US[fmt]
    micros = pc.divide(number, 1_000) if factor is None else pc.multiply(number, factor)
    return pc.cast(micros, UTC_MICROS), pc.invert(valid), f"is not {fmt.replace('_', ' ')}"


def _matches(text: pa.Array, pattern: str) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False)


def _rejections(raw: pa.Table, problems: list[tuple[str, pa.Array, pa.Array, str]]) -> dict[int, Rejected]:
    """The first bad value of every file that has one (a loop over bad files, not rows)."""
    rejected: dict[int, Rejected] = {}
    file_ids = _chunks(raw["file_id"])
    for column, source, invalid, reason in problems:
        bad_rows = pc.indices_nonzero(invalid)
        bad_files = pc.take(file_ids, bad_rows)
        for file_id in pc.unique(bad_files).to_pylist():
            if file_id in rejected:
                continue
            row = bad_rows[pc.index(bad_files, file_id).as_py()].as_py()
            rejected[file_id] = Rejected(file_id, row, column, source[row].as_py(), reason)
    return rejected


def unique_trades(table: pa.Table) -> tuple[pa.Table, int]:
    """Keep one row per trade_id (the earliest fetched); return the rows and how many dropped.

    For one product's rows; ties on ``ingest_ts`` are broken by the original order, so the
    result is a function of the input alone.
    """
    if table.num_rows < 2:
        return table, 0
    ordered = table.sort_by([("trade_id", "ascending"), ("ingest_ts", "ascending")])
    ids = _chunks(ordered["trade_id"])
    changed = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    first = pa.concat_arrays([pa.array([True]), pc.fill_null(changed, True)])
    kept = ordered.filter(first)
    return kept, table.num_rows - kept.num_rows
