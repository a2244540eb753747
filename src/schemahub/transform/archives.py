"""Read bulk-archive coverage records into the engine's input shape, streaming from the zip.

A coverage record names a verbatim zip in the lake and the ids of it that ingest
committed. Its CSV is read with Arrow's CSV reader a block at a time, straight out of
the zip (no unzipped copy, no per-row Python): only the mapped columns, each in the type
its mapping converts to (epochs as integers, prices as doubles; ids as the text the table
stores when the record covers its whole file, else as integers), the rows outside the
committed ids dropped. Blocks are gathered into tables of about
``ROWS_PER_TABLE`` rows, so memory stays the same for a day's file and a month's
(a quarter of a million rows: measured faster than a million, and a quarter of the memory).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from schemahub.errors import ArchiveError
from schemahub.infra.storage import Storage
from schemahub.raw.files import RawHeader
from schemahub.sources.archive import CsvLayout, read_batches
from schemahub.transform import engine
from schemahub.transform.mapping import TradeMapping
from schemahub.transform.reader import RawFile

ROWS_PER_TABLE = 1 << 18


def _types(mapping: TradeMapping) -> dict[str, pa.DataType]:
    """Each mapped CSV column in the type the engine converts it to (text where it maps words)."""
    types: dict[str, pa.DataType] = {}
    for name, spec in mapping.fields.items():
        if spec.path is None:
            continue
        if name == "trade_id" or spec.type == "integer" or spec.format == "epoch":
            types[spec.path] = pa.int64()
        elif spec.type == "decimal":
            types[spec.path] = pa.float64()
        elif spec.map is not None and {key.lower() for key in spec.map} == {"true", "false"}:
            types[spec.path] = pa.bool_()  # True/true/False/false, parsed by the reader
        else:
            types[spec.path] = pa.string()
    return types


def tables(path: Path, header: RawHeader, mapping: TradeMapping) -> Iterator[pa.Table]:
    """The committed rows of one coverage record as ``src.<column>`` tables (no context columns)."""
    archive = header.archive
    assert archive is not None and mapping.columns is not None
    id_path = mapping.fields["trade_id"].path
    assert id_path is not None
    layout = CsvLayout(tuple(mapping.columns), id_column=id_path, time_column=id_path,
                       named_columns=archive.named_columns)
    types = _types(mapping)
    paths = {name: spec.path for name, spec in mapping.fields.items() if spec.path is not None}
    lo, hi = header.covers_after_id, header.covers_through_id
    # A record that covers its whole file (the usual case) keeps every row: its ids are read
    # as the text the table stores, with no number round trip (the engine checks the digits).
    whole = not archive.id_base and lo < archive.file_first_id and archive.file_last_id <= hi
    if whole:
        types[id_path] = pa.string()
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in read_batches(path, archive.filename, layout, sorted(types), types, archive.header_row):
        if archive.id_base:  # the file numbers its rows; the trade ids are numbered from its base
            index = batch.schema.get_field_index(id_path)
            batch = batch.set_column(index, id_path, pc.add(batch.column(id_path), archive.id_base))
        if whole:
            batch = _canonical_ids(batch, id_path)
        else:
            ids = batch.column(id_path)
            keep = pc.and_(pc.greater(ids, lo), pc.less_equal(ids, hi))
            if not pc.all(keep).as_py():
                batch = batch.filter(keep)
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        if rows >= ROWS_PER_TABLE:
            yield _shaped(pending, paths)
            pending, rows = [], 0
    if pending:
        yield _shaped(pending, paths)


def _canonical_ids(batch: pa.RecordBatch, id_path: str) -> pa.RecordBatch:
    """Ids read as text are spelled as REST spells them (no leading zero), or the table would
    hold an archive row and a REST row of one trade under two keys."""
    ids = batch.column(id_path)
    zero = pc.starts_with(ids, "0")
    if not pc.any(zero).as_py():  # the usual case: one pass over the ids
        return batch
    if not pc.any(pc.and_(zero, pc.greater(pc.utf8_length(ids), 1))).as_py():
        return batch  # only the id 0 itself
    try:
        spelled = pc.cast(pc.cast(ids, pa.int64()), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return batch  # not all numbers: the engine rejects the file, naming the value
    return batch.set_column(batch.schema.get_field_index(id_path), id_path, spelled)


def _shaped(batches: list[pa.RecordBatch], paths: dict[str, str]) -> pa.Table:
    table = pa.Table.from_batches(batches)
    return pa.table({f"src.{name}": table.column(path) for name, path in paths.items()})


def check_count(header: RawHeader, rows: int) -> None:
    """The rows read must be the rows ingest committed: anything else is a changed file."""
    if rows != header.trade_count:
        raise ArchiveError(f"{header.archive.filename if header.archive else 'archive'}: {rows} rows in the "
                           f"committed ids ({header.covers_after_id}, {header.covers_through_id}], "
                           f"the coverage record says {header.trade_count}")


def with_context(table: pa.Table, raw_file: RawFile) -> pa.Table:
    """The engine's context columns for rows of one file."""
    n = table.num_rows
    columns = {
        "file_id": engine.constant(pa.scalar(raw_file.file_id, pa.int32()), n),
        "ctx.symbol": engine.constant(pa.scalar(raw_file.symbol, pa.string()), n),
        "ctx.exchange": engine.constant(pa.scalar(raw_file.exchange, pa.string()), n),
        "ctx.fetched_at": engine.constant(pc.cast(pa.scalar(raw_file.fetched_at),
                                                  pa.timestamp("us", tz="UTC")), n),
        "ctx.time_unit": engine.constant(pa.scalar(raw_file.time_unit, pa.string()), n),
    }
    out = table
    for offset, (name, values) in enumerate(columns.items()):
        out = out.add_column(offset, name, values)
    return out


def applied(storage: Storage, raw_file: RawFile, mapping: TradeMapping,
            verify: bool = False) -> Iterator[engine.Applied]:
    """A coverage record's committed rows, mapped, a table at a time; ``ArchiveError`` when its
    zip is gone (or, with ``verify``, no longer has the digest the venue published)."""
    header = raw_file.header
    assert header is not None and header.archive is not None
    with storage.local_copy(header.archive.key) as path:
        if path is None:
            raise ArchiveError(f"its archive file {header.archive.key} is not in the lake")
        if verify:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            if digest != header.archive.sha256:
                raise ArchiveError(f"{header.archive.key} has sha256 {digest}, the venue published "
                                   f"{header.archive.sha256}")
        parts = tables(path, header, mapping)
        if header.archive.duplicates:  # repeated rows: one table, so they can be dropped together
            parts = iter([pa.concat_tables(list(parts))])
        for part in parts:
            result = engine.apply(mapping, with_context(part, raw_file))
            if result.rejected:
                raise ArchiveError(result.rejected[raw_file.file_id].describe())
            if header.archive.duplicates:
                rows, _ = engine.unique_trades(result.table)
                result = engine.Applied(rows, {})
            yield result
