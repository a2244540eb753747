"""The unified trades table: a Delta Lake table (delta-rs), partitioned by exchange and day.

* Every write is one atomic commit; readers never see half of it.
* A transform's progress travels in the same commit as its rows, as Delta *application
  transactions*: ``schemahub/through/<exchange>/<symbol>`` = the highest raw trade id
  whose file is in the table, ``schemahub/from/...`` = where that window starts. Two
  transforms that race on the same product conflict in the commit (delta-rs raises
  ``CommitFailedError``), so one of them re-plans instead of appending twice.
* Files are zstd Parquet (delta-rs defaults to snappy), rows sorted by symbol and time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from schemahub.errors import CommitConflict
from schemahub.transform.schema import PARTITION_BY, SCHEMA

log = logging.getLogger("schemahub.table")

TABLE_NAME = "trades"
APP_PREFIX = "schemahub"


@dataclass(frozen=True)
class Cursor:
    """A product's transformed window of raw trade ids: (from_id, through_id]."""

    from_id: int
    through_id: int


@dataclass(frozen=True)
class TableInfo:
    version: int
    files: int
    rows: int
    bytes: int


def app_id(kind: str, exchange: str, symbol: str) -> str:
    return f"{APP_PREFIX}/{kind}/{exchange}/{symbol}"


def writer_properties() -> WriterProperties:
    return WriterProperties(compression="ZSTD", compression_level=3)


class TradesTable:
    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options

    def load(self, version: int | None = None) -> DeltaTable | None:
        try:
            table = DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        if version is not None:
            table.load_as_version(version)
        return table

    def create(self) -> DeltaTable:
        """The table, created empty if it does not exist yet (safe when several race to it).

        Data is only ever *appended* to an existing snapshot: delta-rs detects a conflict on
        our application transactions between appends, but not between two writes that both
        create version 0, so creation is a separate, data-free commit.
        """
        existing = self.load()
        if existing is not None:
            return existing
        try:
            DeltaTable.create(self.uri, schema=SCHEMA, mode="ignore", partition_by=PARTITION_BY,
                              name=TABLE_NAME, storage_options=self.storage_options,
                              configuration={"delta.checkpointInterval": "20"})
        except Exception as exc:
            log.info("table creation raced (%s); using the winner's", exc)
        created = self.load()
        if created is None:
            raise CommitConflict(f"could not create the table at {self.uri}")
        return created

    def cursors(self, table: DeltaTable | None,
                products: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Cursor]:
        found: dict[tuple[str, str], Cursor] = {}
        if table is None:
            return found
        for exchange, symbol in products:
            through = table.transaction_version(app_id("through", exchange, symbol))
            start = table.transaction_version(app_id("from", exchange, symbol))
            if through is not None and start is not None:
                found[(exchange, symbol)] = Cursor(start, through)
        return found

    @staticmethod
    def existing_ids(dataset: ds.Dataset, exchange: str, symbol: str,
                     first_day: date, last_day: date) -> pa.Array:
        """trade_ids already in the table for one product within a range of days.

        ``dataset`` comes from ``DeltaTable.to_pyarrow_dataset()`` taken *before* a write
        starts: scanning it is pure Arrow, so it is safe inside the batch generator that
        delta-rs pulls from (calling delta-rs there would nest its async runtime).
        """
        days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        predicate = ((ds.field("exchange") == exchange) & ds.field("trade_date").isin(days)
                     & (ds.field("symbol") == symbol))
        return dataset.to_table(columns=["trade_id"], filter=predicate)["trade_id"].combine_chunks()

    def write(self, batches: Iterator[pa.RecordBatch], cursors: dict[tuple[str, str], Cursor], *,
              overwrite: bool, table: DeltaTable, metadata: dict[str, Any]) -> int:
        """Append (or replace everything with) ``batches`` and the cursors in ONE commit."""
        transactions = []
        for (exchange, symbol), cursor in sorted(cursors.items()):
            transactions.append(Transaction(app_id("through", exchange, symbol), cursor.through_id))
            transactions.append(Transaction(app_id("from", exchange, symbol), cursor.from_id))
        reader = pa.RecordBatchReader.from_batches(SCHEMA, batches)
        try:
            write_deltalake(
                table, reader, partition_by=PARTITION_BY, mode="overwrite" if overwrite else "append",
                writer_properties=writer_properties(),
                commit_properties=CommitProperties(app_transactions=transactions, custom_metadata=metadata),
            )
        except CommitFailedError as exc:
            raise CommitConflict(f"another writer committed to {self.uri} first: {exc}") from exc
        loaded = self.load()
        assert loaded is not None
        return loaded.version()

    def info(self, table: DeltaTable) -> TableInfo:
        adds = pa.table(table.get_add_actions(flatten=True))
        rows = int(pa.compute.sum(adds["num_records"]).as_py() or 0) if adds.num_rows else 0
        size = int(pa.compute.sum(adds["size_bytes"]).as_py() or 0) if adds.num_rows else 0
        return TableInfo(table.version(), adds.num_rows, rows, size)


@dataclass(frozen=True)
class CompactResult:
    version_before: int
    version_after: int
    files_removed: int
    files_added: int
    vacuumed: list[str]


MIN_RETENTION_HOURS = 1
"""Vacuum never deletes files younger than this: a reader that loaded a version a moment
ago must still find every file of it."""


def compact(table: DeltaTable, *, target_size: int, zorder: bool, vacuum: bool, retain_hours: int,
            dry_run_vacuum: bool = False) -> CompactResult:
    """Rewrite small files into large ones (one atomic commit); optionally vacuum old files."""
    if retain_hours < MIN_RETENTION_HOURS:
        from schemahub.errors import ConfigError

        raise ConfigError(f"--retain-hours {retain_hours} is below the {MIN_RETENTION_HOURS}h guard: "
                          "readers of recent versions would lose files")
    before = table.version()
    if zorder:
        metrics = table.optimize.z_order(["symbol", "trade_ts"], target_size=target_size,
                                         writer_properties=writer_properties())
    else:
        metrics = table.optimize.compact(target_size=target_size, writer_properties=writer_properties())
    vacuumed: list[str] = []
    if vacuum or dry_run_vacuum:
        vacuumed = table.vacuum(retention_hours=retain_hours, dry_run=dry_run_vacuum,
                                enforce_retention_duration=False)
    return CompactResult(before, table.version(), int(metrics.get("numFilesRemoved", 0)),
                         int(metrics.get("numFilesAdded", 0)), vacuumed)
