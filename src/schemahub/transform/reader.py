"""Read raw JSONL files into the engine's input shape with DuckDB (the fastest JSON reader
we measured: see docs/BENCHMARKS.md).

One query reads a group of files: the mapped paths come out as text columns
(``src.<column>``), the header line itself is dropped, and each row's file name comes
back as an ENUM (a dictionary in Arrow: cheap however long the path) from which the
file's id and context (symbol, exchange, ``fetched_at`` from its header) are taken.
A file DuckDB cannot read (bad gzip, broken JSON) fails the whole query;
``read_isolating`` then bisects the group to find it, so one corrupt file never stops
the others.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from schemahub.infra.duck import connect
from schemahub.infra.storage import ObjectStoreAccess
from schemahub.raw.files import HEADER_KEY, RawHeader
from schemahub.transform.mapping import TradeMapping

log = logging.getLogger("schemahub.transform")


@dataclass(frozen=True)
class RawFile:
    """A raw file selected for transform, with what its header and name told us."""

    file_id: int
    key: str
    path: str
    """Where DuckDB reads it (a local path, or a URL it can open)."""
    exchange: str
    symbol: str
    endpoint: str
    first_id: int
    last_id: int
    fetched_at: str
    trade_count: int
    time_unit: str | None = None
    header: RawHeader | None = None
    """The raw file's header (bulk-archive coverage records are read through it)."""


def _column_sql(mapping: TradeMapping) -> tuple[str, str]:
    """(read_json ``columns`` struct, SELECT list) for a mapping's paths."""
    paths = mapping.paths()
    if mapping.record == "array":
        select = ", ".join(
            f"json_extract_string(r.json, '$[{path.strip('[]')}]') AS \"src.{name}\""
            for name, path in paths.items())
        return "{'json': 'JSON'}", select
    heads = {name: _HEAD.match(path).group(0) for name, path in paths.items()}  # type: ignore[union-attr]
    nested = {heads[name] for name, path in paths.items() if path != heads[name]}
    top_level = sorted(set(heads.values()) | {HEADER_KEY})
    # The header line is read as plain text (only tested for NULL); what we reach into, as JSON.
    columns = ", ".join(f"'{key}': '{'JSON' if key in nested else 'VARCHAR'}'" for key in top_level)
    select = ", ".join(_object_path_sql(name, path, heads[name]) for name, path in paths.items())
    return "{" + columns + "}", select


_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _object_path_sql(name: str, path: str, head: str) -> str:
    rest = path[len(head):]
    if not rest:
        return f'r."{head}" AS "src.{name}"'
    return f"json_extract_string(r.\"{head}\", '${rest}') AS \"src.{name}\""


class RawReader:
    """Reads groups of raw files of one mapping into Arrow tables."""

    def __init__(self, threads: int | None = None, access: ObjectStoreAccess | None = None) -> None:
        if access is None:
            config: dict[str, str | bool | int | float | list[str]] = {"threads": threads} if threads else {}
            self._con = duckdb.connect(config=config)  # local files need no extension
        else:
            self._con = connect(threads, access, extensions=())
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    def read(self, files: Sequence[RawFile], mapping: TradeMapping) -> pa.Table:
        """One query over ``files``; raises ``duckdb.Error`` if any file is unreadable."""
        columns, select = _column_sql(mapping)
        paths = pa.array([f.path for f in files], pa.string())
        header_filter = (f"NOT (json_type(r.json) = 'OBJECT' AND json_exists(r.json, '$.{HEADER_KEY}'))"
                         if mapping.record == "array" else f'r."{HEADER_KEY}" IS NULL')
        options = "format = 'newline_delimited', records = false" if mapping.record == "array" \
            else "format = 'newline_delimited'"
        # Paths in the SQL passed the mapping's strict patterns; file names go in as parameters.
        sql = f"""
            SELECT CAST(r.filename AS raw_file) AS file, {select}
            FROM read_json($files, {options}, columns = {columns}, filename = true,
                           maximum_object_size = 16777216) r
            WHERE {header_filter}
        """  # noqa: S608
        with self._lock:
            self._con.register("paths", pa.table({"path": paths}))
            try:
                self._con.execute("CREATE OR REPLACE TYPE raw_file AS ENUM (SELECT path FROM paths)")
                table = self._con.execute(sql, {"files": paths.to_pylist()}).to_arrow_table()
            finally:
                self._con.unregister("paths")
        return _with_context(table, files, paths)

    def read_isolating(self, files: Sequence[RawFile],
                       mapping: TradeMapping) -> tuple[pa.Table, dict[int, str]]:
        """Read what can be read; return the unreadable files with DuckDB's reason."""
        try:
            return self.read(files, mapping), {}
        except duckdb.Error as exc:
            if len(files) == 1:
                return _empty(), {files[0].file_id: _short(exc)}
        half = len(files) // 2
        left, bad_left = self.read_isolating(files[:half], mapping)
        right, bad_right = self.read_isolating(files[half:], mapping)
        tables = [t for t in (left, right) if t.num_columns]
        table = pa.concat_tables(tables) if tables else _empty()
        return table, {**bad_left, **bad_right}


def _with_context(table: pa.Table, files: Sequence[RawFile], paths: pa.Array) -> pa.Table:
    """Replace the file-name column with file_id and the file's context, per row."""
    names = table.column("file").combine_chunks()
    if not isinstance(names, pa.DictionaryArray):
        names = pc.dictionary_encode(names)
    position = pc.take(pc.index_in(names.dictionary, value_set=paths), names.indices)
    context = {
        "file_id": pa.array([f.file_id for f in files], pa.int32()),
        "ctx.symbol": pa.array([f.symbol for f in files], pa.string()),
        "ctx.exchange": pa.array([f.exchange for f in files], pa.string()),
        "ctx.fetched_at": pc.cast(pa.array([f.fetched_at for f in files], pa.string()),
                                  pa.timestamp("us", tz="UTC")),
        "ctx.time_unit": pa.array([f.time_unit for f in files], pa.string()),
    }
    out = table.drop_columns(["file"])
    for offset, (name, values) in enumerate(context.items()):
        out = out.add_column(offset, name, pc.take(values, position))
    return out


def _empty() -> pa.Table:
    return pa.table({})


def _short(exc: Exception) -> str:
    """DuckDB's reason without the file path (the quarantine record names the file)."""
    text = str(exc).strip().splitlines()[0]
    text = re.sub(r' in file "[^"]*"', "", text)
    return text[:300]
