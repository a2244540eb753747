"""The unified trades table: a Delta Lake table (delta-rs), partitioned by exchange and day.

* Every write is one atomic commit; readers never see half of it.
* A transform's progress travels in the same commit as its rows, as Delta *application
  transactions*: ``schemahub/through/<exchange>/<symbol>`` = the highest raw trade id
  whose file is in the table, ``schemahub/from/...`` = where that window starts (and
  ``derived-through``/``derived-from`` for rows whose ids were derived). Two
  transforms that race on the same product conflict in the commit (delta-rs raises
  ``CommitFailedError``), so one of them re-plans instead of appending twice.
* Files are zstd Parquet (delta-rs defaults to snappy), rows sorted by symbol and time.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from schemahub.errors import CommitConflict, ConfigError, SchemahubError, StorageError
from schemahub.infra.storage import ObjectStoreAccess, Storage
from schemahub.transform.schema import PARTITION_BY, SCHEMA

log = logging.getLogger("schemahub.table")
T = TypeVar("T")

TABLE_NAME = "trades"
TABLE_KEY = "table/trades"
APP_PREFIX = "schemahub"

_PARTITION_FILE = re.compile(r"exchange=(?P<exchange>[a-z0-9_]+)/trade_date=(?P<day>\d{4}-\d{2}-\d{2})/"
                             r"[A-Za-z0-9._-]+\.parquet")


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
    """zstd, with encodings that suit each column (measured in bench/transform.py).

    Timestamps are sorted int64s (delta encoding), trade ids are ascending strings that
    share prefixes (prefix encoding), quantities are noisy doubles (byte-stream split):
    11% fewer bytes than delta-rs's defaults. zstd level 1 writes ~30% faster than level 3
    for 1% more bytes; `compact` rewrites with the same properties.
    """
    times = ColumnProperties(dictionary_enabled=False, encoding="DELTA_BINARY_PACKED")
    # Row groups of 128k rows let readers (and our insert-only merge) skip by symbol and time
    # inside a file; delta-rs would otherwise write one row group of up to 1M rows.
    return WriterProperties(compression="ZSTD", compression_level=1, max_row_group_size=131_072,
                            column_properties={
        "trade_ts": times, "ingest_ts": times,
        "trade_id": ColumnProperties(dictionary_enabled=False, encoding="DELTA_BYTE_ARRAY"),
        "quantity": ColumnProperties(dictionary_enabled=False, encoding="BYTE_STREAM_SPLIT"),
    })


def delta_options(access: ObjectStoreAccess | None) -> dict[str, str] | None:
    """delta-rs ``storage_options`` for a lake (None: a local path needs none)."""
    if access is None:
        return None
    options = {"AWS_REGION": access.region, "AWS_ACCESS_KEY_ID": access.key_id,
               "AWS_SECRET_ACCESS_KEY": access.secret}
    if access.token:
        options["AWS_SESSION_TOKEN"] = access.token
    if access.endpoint_url:
        options["AWS_ENDPOINT_URL"] = access.endpoint_url
        if access.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options


class Replan(SchemahubError):
    """An attempt found something that changes its plan (a file it had to quarantine after
    rows of it were already on their way): nothing was committed, plan again."""


def replanned(attempt: Callable[[int], T], attempts: int, what: str) -> T:
    """``attempt(n)`` until one commits: a lost commit race (``CommitConflict``) plans again
    from the new table version; after ``attempts`` losses, one line says so."""
    for number in range(1, attempts + 1):
        try:
            return attempt(number)
        except (CommitConflict, Replan) as exc:
            if number == attempts:
                raise CommitConflict(f"{what} lost {number} commit races in a row (nothing of it was "
                                     "committed); run it again") from None
            log.warning("%s lost a commit race (%s); planning again", what, exc)
            # Writers that collided once tend to collide again in step: a random pause apart.
            time.sleep(random.uniform(0.0, min(2.0, 0.05 * 2 ** number)))
    raise AssertionError("unreachable")


def delta_failure(exc: Exception, uri: str, doing: str) -> StorageError:
    """A delta-rs failure that is not a commit race, as one line naming the table."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "No space left" in text:
        return StorageError(f"{doing} {uri}: no space left on the device; the table is unchanged (a Delta "
                            "commit is all or nothing) - free some space and run the command again")
    return StorageError(f"{doing} {uri} failed: {text[:300]}")


class TradesTable:
    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options

    @classmethod
    def of(cls, storage: Storage) -> TradesTable:
        """The unified table under a lake."""
        return cls(storage.url_for(TABLE_KEY), delta_options(storage.access()))

    def load(self, version: int | None = None) -> DeltaTable | None:
        try:
            table = DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise delta_failure(exc, self.uri, "reading the table") from None
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
        except CommitFailedError as exc:
            log.info("table creation raced (%s); using the winner's", exc)  # mode=ignore lost a race
        except (DeltaError, OSError) as exc:
            raise delta_failure(exc, self.uri, "creating the table") from None
        created = self.load()
        if created is None:
            raise StorageError(f"could not create the table at {self.uri}: it is still not there")
        return created

    def cursors(self, table: DeltaTable | None, products: Iterable[tuple[str, str]],
                derived: bool = False) -> dict[tuple[str, str], Cursor]:
        """Each product's transformed window of raw ids (``derived``: of its derived ids)."""
        found: dict[tuple[str, str], Cursor] = {}
        if table is None:
            return found
        prefix = "derived-" if derived else ""
        for exchange, symbol in products:
            through = table.transaction_version(app_id(f"{prefix}through", exchange, symbol))
            start = table.transaction_version(app_id(f"{prefix}from", exchange, symbol))
            if through is not None and start is not None:
                found[(exchange, symbol)] = Cursor(start, through)
        return found

    @staticmethod
    def file_stats(table: DeltaTable) -> pa.Table:
        """Per data file: exchange, symbol range and trade_ts range, from the Delta log."""
        adds = pa.table(table.get_add_actions(flatten=True))
        wanted = ["partition.exchange", "min.symbol", "max.symbol", "min.trade_ts", "max.trade_ts"]
        if adds.num_rows == 0 or not set(wanted) <= set(adds.column_names):
            return pa.table({name: pa.array([], pa.string()) for name in wanted})
        return adds.select(wanted)

    @staticmethod
    def may_hold(stats: pa.Table, exchange: str, symbol: str, first: datetime, last: datetime) -> bool:
        """Could any file hold this product's trades between the two times?

        Delta keeps timestamp statistics in milliseconds, truncated, so a file's recorded
        maximum may be up to 1 ms below its real one: the comparison allows for that.
        """
        if stats.num_rows == 0:
            return False
        slack = first - timedelta(milliseconds=1)
        ts_type = stats["min.trade_ts"].type
        conditions = [
            pc.equal(stats["partition.exchange"], exchange),
            pc.less_equal(stats["min.symbol"], symbol),
            pc.greater_equal(stats["max.symbol"], symbol),
            pc.less_equal(stats["min.trade_ts"], pa.scalar(last, ts_type)),
            pc.greater_equal(stats["max.trade_ts"], pa.scalar(slack, ts_type)),
        ]
        hit = conditions[0]
        for condition in conditions[1:]:
            hit = pc.and_kleene(hit, condition)
        return bool(pc.any(pc.fill_null(hit, True)).as_py())  # missing statistics: assume it may

    @staticmethod
    def existing_ids(dataset: ds.Dataset, exchange: str, symbol: str,
                     first: datetime, last: datetime) -> pa.Array:
        """trade_ids already in the table for one product, among trades between two times.

        A trade keeps its time, so a duplicate of a new row lies within the new rows' time
        range: the day partitions and the files' (and row groups') ``trade_ts`` statistics
        let the scan skip everything else. New trades past the table's end read nothing.

        ``dataset`` comes from ``DeltaTable.to_pyarrow_dataset()`` taken *before* a write
        starts: scanning it is pure Arrow, so it is safe inside the batch generator that
        delta-rs pulls from (calling delta-rs there would nest its async runtime).
        """
        days = [first.date() + timedelta(days=i) for i in range((last.date() - first.date()).days + 1)]
        predicate = ((ds.field("exchange") == exchange) & ds.field("trade_date").isin(days)
                     & (ds.field("symbol") == symbol)
                     & (ds.field("trade_ts") >= first) & (ds.field("trade_ts") <= last))
        return dataset.to_table(columns=["trade_id"], filter=predicate)["trade_id"].combine_chunks()

    def write(self, batches: Iterator[pa.RecordBatch], cursors: dict[tuple[str, str], Cursor], *,
              overwrite: bool, table: DeltaTable, metadata: dict[str, Any],
              derived_cursors: dict[tuple[str, str], Cursor] | None = None) -> int:
        """Append (or replace everything with) ``batches`` and the cursors in ONE commit."""
        transactions = []
        for prefix, windows in (("", cursors), ("derived-", derived_cursors or {})):
            for (exchange, symbol), cursor in sorted(windows.items()):
                transactions += [Transaction(app_id(f"{prefix}through", exchange, symbol), cursor.through_id),
                                 Transaction(app_id(f"{prefix}from", exchange, symbol), cursor.from_id)]
        reader = pa.RecordBatchReader.from_batches(SCHEMA, batches)
        try:
            write_deltalake(
                table, reader, partition_by=PARTITION_BY, mode="overwrite" if overwrite else "append",
                writer_properties=writer_properties(),
                commit_properties=CommitProperties(app_transactions=transactions, custom_metadata=metadata),
            )
        except CommitFailedError as exc:
            raise CommitConflict(f"another writer committed to {self.uri} first: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'conflict'}") from None
        except (DeltaError, OSError) as exc:
            raise delta_failure(exc, self.uri, "writing to the table") from None
        loaded = self.load()
        assert loaded is not None
        return loaded.version()

    def data_files(self, table: DeltaTable) -> list[str] | None:
        """This snapshot's Parquet files, as URIs a plain Parquet reader can open; or None.

        A Delta snapshot is exactly its live ``add`` actions; reading those files directly
        (their partition values spelled in their ``exchange=…/trade_date=…`` paths) gives
        the same rows as a Delta reader, without rebuilding the snapshot on every query.
        None when that would not hold: deletion vectors or column mapping (reader protocol
        above 1), a file whose path does not spell its partition values (other writers may
        lay files out differently), or a table location with characters a Parquet reader
        would read as a glob or a partition. An empty snapshot is None too: there is nothing
        to list, and a Delta reader knows its schema.
        """
        base = self.uri.rstrip("/")
        if any(char in base for char in "=*?[{"):
            return None  # a Parquet reader would take these for partition values or globs
        protocol = table.protocol()
        if protocol.min_reader_version > 1 or protocol.reader_features:
            return None
        adds = pa.table(table.get_add_actions(flatten=True))
        if adds.num_rows == 0:
            return None
        files = []
        for path, exchange, day in zip(adds["path"].to_pylist(), adds["partition.exchange"].to_pylist(),
                                       adds["partition.trade_date"].to_pylist(), strict=True):
            spelled = _PARTITION_FILE.fullmatch(path)
            if spelled is None or (spelled["exchange"], spelled["day"]) != (exchange, str(day)):
                return None
            files.append(f"{base}/{path}")
        return files

    def info(self, table: DeltaTable) -> TableInfo:
        adds = pa.table(table.get_add_actions(flatten=True))
        rows = int(pc.sum(adds["num_records"]).as_py() or 0) if adds.num_rows else 0
        size = int(pc.sum(adds["size_bytes"]).as_py() or 0) if adds.num_rows else 0
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
    """Rewrite small files into large ones (one atomic commit); optionally vacuum old files.

    The caller holds the table's maintenance lease: delta-rs lets two rewrites that remove
    the same files (``dataChange=false``) both commit, the second re-adding the rows the
    first moved (delta-rs PR #3982 relaxed exactly that check), so rewrites must never
    race each other. A commit race with a transform is a ``CommitConflict`` (retried).
    """
    check_retention(retain_hours)
    before = table.version()
    try:
        if zorder:
            metrics = table.optimize.z_order(["symbol", "trade_ts"], target_size=target_size,
                                             writer_properties=writer_properties())
        else:
            metrics = table.optimize.compact(target_size=target_size, writer_properties=writer_properties())
    except CommitFailedError as exc:
        raise CommitConflict(f"another writer committed first ({str(exc).splitlines()[0]})") from None
    except (DeltaError, OSError) as exc:
        raise delta_failure(exc, str(table.table_uri), "compacting") from None
    vacuumed: list[str] = []
    if vacuum or dry_run_vacuum:
        try:
            vacuumed = table.vacuum(retention_hours=retain_hours, dry_run=dry_run_vacuum,
                                    enforce_retention_duration=False)
        except (DeltaError, OSError) as exc:
            raise delta_failure(exc, str(table.table_uri), "vacuuming") from None
    return CompactResult(before, table.version(), int(metrics.get("numFilesRemoved", 0)),
                         int(metrics.get("numFilesAdded", 0)), vacuumed)


def check_retention(retain_hours: int) -> None:
    if retain_hours < MIN_RETENTION_HOURS:
        raise ConfigError(f"--retain-hours {retain_hours} is below the {MIN_RETENTION_HOURS}h guard: "
                          "readers of recent versions would lose files")
