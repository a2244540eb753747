"""SQL over the unified table with DuckDB.

The ``trades`` view is DuckDB's ``delta_scan`` of the table (the extension comes from the
pinned ``duckdb-extension-delta`` wheel and is installed from that file: no network,
nothing written to the home directory). It prunes partitions (exchange, trade_date) and
skips files by their ``trade_ts``/``symbol`` statistics. ``version`` pins an older table
version (time travel); ``as_of`` picks the version current at a timestamp.

Views and example queries bucket time with integer math on ``epoch_us(trade_ts)`` or the
stored ``trade_date``, never ICU calendar functions on TIMESTAMPTZ (measured 5-35x
slower; see ../shared/reference/tech-notes.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from schemahub.errors import ConfigError, SchemahubError
from schemahub.infra.duck import connect
from schemahub.infra.storage import Storage
from schemahub.table.delta import TradesTable


class QueryError(SchemahubError):
    """The SQL failed (syntax, unknown column, ...); DuckDB's message says why."""

    exit_code = 2


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class QueryEngine:
    def __init__(self, table: TradesTable, *, version: int | None = None, as_of: datetime | None = None,
                 threads: int | None = None, storage: Storage | None = None) -> None:
        self.table = table
        self.storage = storage
        self.con = connect(threads, storage)
        self.version = self._resolve_version(version, as_of)
        self._create_views()

    def _resolve_version(self, version: int | None, as_of: datetime | None) -> int | None:
        if version is None and as_of is None:
            return None
        delta = self.table.load()
        if delta is None:
            raise ConfigError(f"there is no table at {self.table.uri} yet: run `schemahub transform`")
        if version is not None:
            if not 0 <= version <= delta.version():
                raise ConfigError(f"--version {version} does not exist (the table is at {delta.version()})")
            return version
        assert as_of is not None
        cutoff = int(as_of.timestamp() * 1000)
        eligible = [h["version"] for h in delta.history() if h["timestamp"] <= cutoff]
        if not eligible:
            raise ConfigError(f"--as-of {as_of.isoformat()} is before the table existed")
        return int(max(eligible))

    def _create_views(self) -> None:
        if self.storage is not None:
            from schemahub.metrics import views

            views.create(self.con, self.storage)
        self._missing = self.table.load() is None
        if self._missing:
            return  # sql() explains that the table does not exist yet
        args = _quote(self.table.uri) + (f", version => {self.version}" if self.version is not None else "")
        # The URI is quoted and the version is an int: nothing user-typed is spliced in.
        self.con.execute(f"CREATE VIEW trades AS SELECT * FROM delta_scan({args})")  # noqa: S608

    def sql(self, text: str, params: Mapping[str, object] | None = None) -> pa.Table:
        try:
            return self.con.execute(text, params or {}).to_arrow_table()
        except duckdb.CatalogException as exc:
            if self._missing and "trades" in str(exc):
                raise ConfigError(f"there is no table at {self.table.uri} yet: run `schemahub transform` "
                                  "first") from None
            raise QueryError(f"query failed: {str(exc).strip()}") from None
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {str(exc).strip()}") from None

    def close(self) -> None:
        self.con.close()


def read_sql_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
