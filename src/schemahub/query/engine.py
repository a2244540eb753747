"""SQL over the unified table with DuckDB.

The ``trades`` view reads one pinned table version: the engine resolves the Delta
snapshot once (delta-rs) and the view reads exactly that version's Parquet files with
DuckDB's Parquet reader, partition columns taken from the files' ``exchange=…/
trade_date=…`` paths. DuckDB's ``delta_scan`` rebuilds the snapshot on every query, a
fixed ~20 ms that doubled small queries (docs/BENCHMARKS.md); it remains the fallback for
tables a plain Parquet reader must not read alone (deletion vectors, column mapping,
foreign file layouts). Either way partitions are pruned and row groups are skipped by
their ``trade_ts``/``symbol`` statistics. Data files are immutable, so their footers are
cached for the session. Every statement of a session sees the same version; ``version``
pins an older one (time travel), ``as_of`` the one current at a timestamp.

Views and example queries bucket time with integer math on ``epoch_us(trade_ts)`` or the
stored ``trade_date``, never ICU calendar functions on TIMESTAMPTZ (measured 5-35x
slower; see ../shared/reference/tech-notes.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from schemahub.errors import ConfigError, QueryError
from schemahub.infra.duck import connect
from schemahub.infra.storage import ObjectStoreAccess
from schemahub.table.delta import TradesTable
from schemahub.transform.schema import COLUMNS

_FILES_VARIABLE = "schemahub_trade_files"
# How DuckDB reports a file of the list that is not there: locally (a pattern that matches
# nothing), and on an object store (a 404).
_GONE = re.compile(r'No files found that match the pattern "(?P<pattern>[^"]+)"'
                   r"|HTTP (?:GET|HEAD) error (?:reading|on) '(?P<url>[^']+)'[^\n]*HTTP 404")
_GLOB_TAIL = re.compile(r"\[(.)\]$")  # undoes _glob_matching_only


_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.SET,
              duckdb.StatementType.VARIABLE_SET, duckdb.StatementType.CALL, duckdb.StatementType.PRAGMA}
"""Statements a read-only session runs: queries, EXPLAIN, settings. Not COPY ... TO, CREATE,
INSERT, ATTACH, INSTALL/LOAD, EXPORT: those write files or change the session's catalog."""

ViewHook = Callable[[duckdb.DuckDBPyConnection], None]
"""Creates more views on a session's connection (the run history, certificates, ...)."""


@dataclass(frozen=True)
class StatementResult:
    sql: str
    table: pa.Table


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _glob_matching_only(path: str) -> str:
    """A glob pattern that matches exactly the local file ``path`` (``….parque[t]``).

    DuckDB (1.5) validates its footer cache against the modification time a directory
    listing returns; for a plain path in a list it opens the file first, which cost 12 ms
    per query over 96 files where the listing costs 2 ms (docs/BENCHMARKS.md). A pattern
    still names one file: the path's other characters are checked to be glob-free
    (``TradesTable.data_files``), and a pattern that matches nothing is an error, as a
    missing file is. Not for object stores: there every pattern is a LIST request on every
    query, pruned or not (320 ms per query over 96 files on moto), where a plain URI costs
    requests only for the files a query reads.
    """
    return f"{path[:-1]}[{path[-1]}]"


class QueryEngine:
    def __init__(self, table: TradesTable, *, version: int | None = None, as_of: datetime | None = None,
                 threads: int | None = None, access: ObjectStoreAccess | None = None,
                 views: Sequence[ViewHook] = ()) -> None:
        self.table = table
        self._files: frozenset[str] = frozenset()  # the data files the view reads, if it lists them
        self.con = connect(threads, access)
        try:
            self.con.execute("SET parquet_metadata_cache = true")
            self.snapshot = self._open_snapshot(version, as_of)
            """The table version every statement reads (loaded once); None: no table yet."""
            self._create_views()
            for create in views:  # (after `trades`: a hook's views may read it)
                create(self.con)
        except BaseException:
            self.con.close()
            raise

    @property
    def version(self) -> int | None:
        return None if self.snapshot is None else self.snapshot.version()

    def _open_snapshot(self, version: int | None, as_of: datetime | None) -> DeltaTable | None:
        delta = self.table.load()
        if version is None and as_of is None:
            return delta
        if delta is None:
            raise ConfigError(f"there is no table at {self.table.uri} yet: run `schemahub transform`")
        if version is None:
            assert as_of is not None
            cutoff = int(as_of.timestamp() * 1000)
            eligible = [h["version"] for h in delta.history() if h["timestamp"] <= cutoff]
            if not eligible:
                raise ConfigError(f"--as-of {as_of.isoformat()} is before the table existed")
            version = int(max(eligible))
        elif not 0 <= version <= delta.version():
            raise ConfigError(f"--version {version} does not exist (the table is at {delta.version()})")
        delta.load_as_version(version)
        return delta

    def _create_views(self) -> None:
        if self.snapshot is None:
            return  # sql() explains that the table does not exist yet
        files = self.table.data_files(self.snapshot)
        self._files = frozenset(files or ())
        if files is None:
            # The URI is quoted and the version is an int: nothing user-typed is spliced in.
            source = f"delta_scan({_quote(self.table.uri)}, version => {self.version})"
        else:
            if "://" not in self.table.uri:  # a local table (object stores: see _glob_matching_only)
                files = [_glob_matching_only(file) for file in files]
            self.con.execute(f"SET VARIABLE {_FILES_VARIABLE} = $files", {"files": files})
            source = (f"read_parquet(getvariable('{_FILES_VARIABLE}'), hive_partitioning = true, "
                      "hive_types = {'exchange': VARCHAR, 'trade_date': DATE}, hive_types_autocast = false)")
        columns = ", ".join(column.name for column in COLUMNS)
        try:
            self.con.execute(f"CREATE VIEW trades AS SELECT {columns} FROM {source}")  # noqa: S608
        except duckdb.Error as exc:
            raise self._failure(exc) from None

    def script(self, text: str, params: Mapping[str, object] | None = None, *,
               allow_writes: bool = False) -> list[StatementResult]:
        """Every statement of ``text``, in order, each with its own result.

        Read-only unless ``allow_writes``: a statement that would write a file or change the
        session (COPY ... TO, CREATE, INSERT, ATTACH, ...) is refused before any runs.
        ``params`` fill the ``$name`` placeholders each statement uses.
        """
        try:
            statements = duckdb.extract_statements(text)
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {str(exc).strip()}") from None
        if not statements:
            raise QueryError("no SQL statement given")
        if not allow_writes:
            for statement in statements:
                if statement.type not in _READ_ONLY:
                    kind = statement.type.name.replace("_", " ")
                    raise QueryError(f"{kind} is not allowed in a read-only session (statement "
                                     f"{statement.query.strip()[:60]!r}); pass --allow-writes to run it")
        given = dict(params or {})
        results = []
        for statement in statements:
            wanted = {name: given[name] for name in statement.named_parameters if name in given}
            missing = [name for name in statement.named_parameters if name not in given]
            if missing:
                raise QueryError(f"the SQL uses ${missing[0]} but no --param {missing[0]}=... was given")
            results.append(StatementResult(statement.query.strip(), self.sql(statement, wanted)))
        return results

    def sql(self, text: str | duckdb.Statement, params: Mapping[str, object] | None = None) -> pa.Table:
        try:
            return self.con.execute(text, params or {}).to_arrow_table()
        except duckdb.CatalogException as exc:
            if self.snapshot is None and "trades" in str(exc):
                raise ConfigError(f"there is no table at {self.table.uri} yet: run `schemahub transform` "
                                  "first") from None
            raise self._failure(exc) from None
        except duckdb.Error as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: duckdb.Error) -> QueryError:
        gone = _GONE.search(str(exc))
        file = (gone["url"] or _GLOB_TAIL.sub(r"\1", gone["pattern"])) if gone else None
        if file in self._files:
            return QueryError(f"table version {self.version} lists a data file that is gone: {file} "
                              "(deleted outside Delta Lake, or vacuumed with a retention shorter than "
                              "this query)")
        return QueryError(f"query failed: {str(exc).strip()}")

    def close(self) -> None:
        self.con.close()


def read_sql_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
