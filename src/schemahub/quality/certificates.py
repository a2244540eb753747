"""Completeness certificates: one row per (exchange, symbol, UTC day) that anyone can re-check.

``schemahub certify`` writes them to a second Delta table, ``table/completeness``, beside the
trades table (same lake, same commit discipline: one MERGE per run, keyed by exchange,
symbol and day). A certificate is issued for a *closed* day only: the product's ingestion
has passed the day's end, and its history covers the day's start.

What a certificate holds, computed from the trades table at one version:

* the day's first and last trade id, its trade count, and - where the venue's ids count
  its trades - the count expected from the id span (minus the ids the exchange is known to
  have skipped: the ingest gap log, with when and by which run each was seen);
* time coverage: the longest silence between two trades against the day's mean interval;
  volume and VWAP;
* a content hash: md5 over the day's rows in canonical order (by trade id; every column that
  is data, numbers as ``%.17g``, times as epoch µs), so a day can be re-verified bit for bit
  after compaction, a migration, or a copy into another engine;
* a status: ``certified`` (every expected trade is there, no skipped id), ``certified_with_exchange_gaps``
  (every trade the exchange published is there; it skipped ids, logged with evidence),
  ``incomplete`` (trades we know of are missing), ``unverifiable`` (ids that count nothing -
  Bitfinex's venue-wide ids, Kraken rows without ids - and no independent source yet).

Incremental: a day is computed again only when its (exchange, day) partition of the trades
table holds a different number of rows than when it was certified (a transform or repair
added rows) - compaction, which rewrites files without changing rows, costs nothing.
``check`` recomputes the hash and count of certified days (a sample; every day with
``--deep``) and fails on any difference: tampering or corruption.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from schemahub.errors import ConfigError, CorruptState, SchemahubError
from schemahub.infra.checkpoints import CheckpointStore, Gap, GapLogStore
from schemahub.infra.storage import Storage
from schemahub.quality.crosscheck import NOT_AVAILABLE, AggregateSource, compare, our_buckets, unavailable
from schemahub.query import day_stats
from schemahub.query.engine import QueryEngine
from schemahub.sources.archive import DAY_IDS
from schemahub.table.delta import delta_failure, delta_options

CERTIFICATES_KEY = "table/completeness"
SAMPLE = 20
"""Certified days ``check`` re-verifies without ``--deep``."""

SCHEMA = pa.schema([
    ("exchange", pa.string()), ("symbol", pa.string()), ("day", pa.date32()),
    ("status", pa.string()),
    ("first_trade_id", pa.string()), ("last_trade_id", pa.string()),
    ("trades", pa.int64()), ("expected", pa.int64()),
    ("exchange_gap_ids", pa.int64()), ("unexplained_ids", pa.int64()),
    ("evidence", pa.string()),
    ("longest_silence_s", pa.float64()), ("mean_interval_s", pa.float64()),
    ("volume", pa.float64()), ("vwap", pa.float64()),
    ("content_hash", pa.string()),
    ("table_version", pa.int64()), ("partition_rows", pa.int64()),
    ("cross_check", pa.string()),
])

DAY_STATS_SQL = day_stats.DAY_STATS_SQL
"""The per-day aggregates a certificate holds (``query/day_stats.py``)."""


@dataclass
class CertifyReport:
    table_version: int
    computed: int = 0
    """Certificates written (new days, and days whose rows changed)."""
    unchanged: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The certificates written by this run."""

    def to_dict(self) -> dict[str, Any]:
        return {"table_version": self.table_version, "computed": self.computed, "unchanged": self.unchanged,
                "by_status": self.by_status}


class Certificates:
    """The certificate table of a lake."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.uri = storage.url_for(CERTIFICATES_KEY)
        self.options = delta_options(storage.access())

    def load(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self.options)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise delta_failure(exc, self.uri, "reading the certificates") from None

    def rows(self) -> list[dict[str, Any]]:
        table = self.load()
        return [] if table is None else rows_of(self.arrow(table))

    def arrow(self, table: DeltaTable) -> pa.Table:
        """The certificates of a loaded table, read file by file through the lake's storage.

        Not ``to_pyarrow_table``: its dataset scanner leaves threads that now and then abort the
        interpreter at exit (apache/arrow#34314, delta-io/delta-rs#2184); the table is small."""
        parts = []
        for path in pa.table(table.get_add_actions(flatten=True))["path"].to_pylist():
            key = f"{CERTIFICATES_KEY}/{unquote(path)}"
            data = self.storage.read(key)
            if data is None:
                raise CorruptState(f"{key} is listed in the certificates' Delta log but missing: "
                                   "run `schemahub certify` after restoring it, or move the table aside",
                                   path=key)
            parts.append(pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False))  # no dataset scanner
        return pa.concat_tables([p.select(SCHEMA.names).cast(SCHEMA) for p in parts]) if parts \
            else SCHEMA.empty_table()

    def merge(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace the certificates of these days, in one commit."""
        if not rows:
            return
        source = pa.Table.from_pylist(rows, schema=SCHEMA)
        try:
            table = self.load()
            if table is None:
                write_deltalake(self.uri, source, mode="append", storage_options=self.options)
                return
            (table.merge(source, "t.exchange = s.exchange AND t.symbol = s.symbol AND t.day = s.day",
                         source_alias="s", target_alias="t")
             .when_matched_update_all().when_not_matched_insert_all().execute())
        except (DeltaError, OSError) as exc:
            raise delta_failure(exc, self.uri, "writing the certificates") from None


def certify(storage: Storage, engine: QueryEngine, exchanges: set[str] | None = None,
            now: datetime | None = None, aggregates: AggregateSource | None = None) -> CertifyReport:
    """Certify every closed day not certified yet, whose rows changed since, or whose
    cross-check could not be done last time; ``aggregates``: the venues' own figures."""
    snapshot = engine.snapshot
    if snapshot is None:
        raise ConfigError("there is no trades table yet: run `schemahub transform` first")
    version = int(snapshot.version())
    report = CertifyReport(version)
    counts = partition_rows(snapshot)
    known = {_key(row): row for row in Certificates(storage).rows()}
    closed = closed_days(storage, exchanges, now or datetime.now(UTC))
    todo: dict[str, set[date]] = {}
    gap_logs = GapLogStore(storage)
    gaps: dict[tuple[str, str], list[Gap]] = {}
    for (exchange, symbol), days in closed.items():
        stored = gap_logs.load(exchange, symbol)
        gaps[(exchange, symbol)] = [] if stored is None else list(stored.value.gaps)
        for day in days:
            row = known.get((exchange, symbol, day))
            if (row is not None and row["partition_rows"] == counts.get((exchange, day), 0)
                    and '"unavailable"' not in row["cross_check"]
                    and not _stale_evidence(row, gaps[(exchange, symbol)])):
                report.unchanged += 1
                continue
            todo.setdefault(exchange, set()).add(day)
    for exchange, days in sorted(todo.items()):
        stats = engine.sql(DAY_STATS_SQL, {"exchange": exchange, "days": sorted(days)}).to_pylist()
        feed = aggregates.feed(exchange) if aggregates is not None else None
        ours = our_buckets(engine, exchange, days, feed.interval_s) if feed is not None else {}
        for stat in stats:
            symbol, day = stat["symbol"], stat["day"]
            if day not in closed.get((exchange, symbol), set()):
                continue
            cross = NOT_AVAILABLE
            if feed is not None and aggregates is not None:
                try:
                    cross = compare(feed, ours.get((symbol, day), {}), aggregates.day(exchange, symbol, day))
                except SchemahubError as exc:
                    cross = unavailable(feed, str(exc))
            report.rows.append(_certificate(stat, gaps.get((exchange, symbol), []), version,
                                            counts.get((exchange, day), 0), cross))
    Certificates(storage).merge(report.rows)
    report.computed = len(report.rows)
    for row in report.rows:
        report.by_status[row["status"]] = report.by_status.get(row["status"], 0) + 1
    return report


def partition_rows(snapshot: DeltaTable) -> dict[tuple[str, date], int]:
    """Rows per (exchange, day) partition of the trades table, from the Delta log alone."""
    adds = pa.table(snapshot.get_add_actions(flatten=True))
    out: dict[tuple[str, date], int] = {}
    if adds.num_rows == 0:
        return out
    names = ("partition.exchange", "partition.trade_date", "num_records")
    columns = (adds[name].to_pylist() for name in names)
    for exchange, day, rows in zip(*columns, strict=True):
        key = (exchange, day if isinstance(day, date) else date.fromisoformat(str(day)))
        out[key] = out.get(key, 0) + int(rows or 0)
    return out


def closed_days(storage: Storage, exchanges: set[str] | None,
                now: datetime) -> dict[tuple[str, str], set[date]]:
    """Per product, the days its ingestion covers from start to end (and that are over)."""
    store = CheckpointStore(storage)
    out: dict[tuple[str, str], set[date]] = {}
    for _, exchange, symbol in store.listed():
        if exchanges is not None and exchange not in exchanges:
            continue
        try:
            stored = store.load(exchange, symbol)
        except SchemahubError:
            continue  # `check` reports an unreadable checkpoint
        cp = stored.value if stored else None
        if cp is None or cp.last_trade_time is None or cp.first_trade_time is None:
            continue
        first = cp.first_trade_time.date()
        covered = cp.covered_since
        if covered is None or covered > datetime(first.year, first.month, first.day, tzinfo=UTC):
            first += timedelta(days=1)  # history starts within the first day: not a whole day
        last = min(cp.last_trade_time.date(), now.date()) - timedelta(days=1)  # ingested past its end
        if _sequence(exchange) == "day" and cp.cursor:  # a daily-archive venue: its files were whole
            last = min(date.fromisoformat(cp.cursor), now.date()) - timedelta(days=1)
        days = {first + timedelta(days=n) for n in range((last - first).days + 1)}
        if days:
            out[(exchange, symbol)] = days
    return out


def _certificate(stat: dict[str, Any], gaps: Iterable[Any], version: int, partition: int,
                 cross: dict[str, Any]) -> dict[str, Any]:
    exchange, day = stat["exchange"], stat["day"]
    first, last, trades = stat["first_id"], stat["last_id"], stat["trades"]
    sequence = _sequence(exchange)
    expected: int | None = None
    logged: list[dict[str, Any]] = []
    if (sequence is not None and not stat["derived"]) or sequence == "day":
        low = _lowest_id(sequence, first, day)
        logged = _evidence(gaps, low, last)
        expected = last - low + 1 - sum(g["last_id"] - g["first_id"] + 1 for g in logged)
    skipped = sum(g["last_id"] - g["first_id"] + 1 for g in logged)
    unexplained = max(0, expected - trades) if expected is not None else 0
    counted = cross["result"] == "agrees" and "trades" in cross["figures"]
    if cross["result"] == "disagrees" or (expected is not None and (unexplained or trades > expected)):
        status = "incomplete"
    elif expected is None:
        status = "certified" if counted else "unverifiable"  # the venue's count is the evidence
    else:
        status = "certified_with_exchange_gaps" if skipped else "certified"
    return {
        "exchange": exchange, "symbol": stat["symbol"], "day": day, "status": status,
        "first_trade_id": str(first), "last_trade_id": str(last), "trades": trades, "expected": expected,
        "exchange_gap_ids": skipped, "unexplained_ids": unexplained,
        "evidence": json.dumps({"exchange_gaps": logged}, sort_keys=True),
        "longest_silence_s": float(stat["longest_silence_s"]), "mean_interval_s": 86_400.0 / trades,
        "volume": float(stat["volume"]), "vwap": float(stat["vwap"]) if stat["vwap"] is not None else None,
        "content_hash": stat["content_hash"], "table_version": version, "partition_rows": partition,
        "cross_check": json.dumps(cross, sort_keys=True),
    }


def _evidence(gaps: Iterable[Gap], low: int, last: int) -> list[dict[str, Any]]:
    """The logged exchange gaps within ids ``low..last``: when and by which run each was seen,
    and when ``repair`` asked again and found it still absent."""
    return [{"first_id": max(g.first_id, low), "last_id": min(g.last_id, last),
             "detected_at": g.detected_at.isoformat(), "run_id": g.run_id,
             "confirmed_at": [t.isoformat() for t in g.confirmed_at]}
            for g in gaps if g.last_id >= low and g.first_id <= last]


def _lowest_id(sequence: str, first: int, day: date) -> int:
    """Where the day's id sequence starts: its first trade, or the day's base (ids per day)."""
    return first if sequence == "ids" else int(day.strftime("%Y%m%d")) * DAY_IDS + 1


def _stale_evidence(row: dict[str, Any], gaps: list[Gap]) -> bool:
    """The gap log changed for this day since its certificate (a repair confirmed or filled gaps)."""
    sequence = _sequence(row["exchange"])
    first, last = row["first_trade_id"], row["last_trade_id"]
    if sequence is None or not first.isdigit() or not last.isdigit():
        return False
    low = _lowest_id(sequence, int(first), row["day"])
    certified = json.loads(row["evidence"])["exchange_gaps"]
    return bool(_evidence(gaps, low, int(last)) != certified)


def _sequence(exchange: str) -> str | None:
    """How the venue's ids count its trades: "ids" (one sequence), "day" (each day's rows), None."""
    from schemahub.sources.registry import spec

    try:
        venue = spec(exchange)
    except SchemahubError:
        return None
    if venue.connector.dense_ids:
        return "ids"
    archive = venue.archive_class()
    return "day" if archive is not None and archive.day_numbered else None


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """Every certificate of a certificate table read into Arrow, in key order."""
    return sorted(table.to_pylist(), key=_key)


def verify(engine: QueryEngine, rows: list[dict[str, Any]], deep: bool) -> tuple[list[dict[str, Any]], int]:
    """(mismatches, days checked): certified days whose rows no longer hash or count the same."""
    if not deep:  # a deterministic sample that moves with the data: the smallest hashes
        rows = sorted(rows, key=lambda r: hashlib.sha256(r["content_hash"].encode()).hexdigest())[:SAMPLE]
    wanted: dict[str, set[date]] = {}
    for row in rows:
        wanted.setdefault(row["exchange"], set()).add(row["day"])
    now: dict[tuple[str, str, date], dict[str, Any]] = {}
    for exchange, days in wanted.items():
        for stat in engine.sql(DAY_STATS_SQL, {"exchange": exchange, "days": sorted(days)}).to_pylist():
            now[(exchange, stat["symbol"], stat["day"])] = stat
    bad = []
    for row in rows:
        stat = now.get(_key(row))
        if stat is None or stat["content_hash"] != row["content_hash"] or stat["trades"] != row["trades"]:
            bad.append({"exchange": row["exchange"], "symbol": row["symbol"], "day": row["day"].isoformat(),
                        "certified": {"trades": row["trades"], "content_hash": row["content_hash"]},
                        "now": None if stat is None else {"trades": stat["trades"],
                                                          "content_hash": stat["content_hash"]}})
    return bad, len(rows)


def _key(row: dict[str, Any]) -> tuple[str, str, date]:
    return row["exchange"], row["symbol"], row["day"]


def json_lines(rows: Iterable[dict[str, Any]]) -> str:
    """Certificates as JSON lines (the export written beside exported data)."""
    def plain(value: object) -> object:
        return value.isoformat() if isinstance(value, date) else value

    return "".join(json.dumps({k: plain(v) for k, v in row.items()}, sort_keys=True) + "\n" for row in rows)


def views(storage: Storage) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """A view hook (for ``QueryEngine``): ``certificates``, and ``certified_trades`` (the rows of
    certified days only). Created after ``trades``."""
    certificates = Certificates(storage)

    def create(con: duckdb.DuckDBPyConnection) -> None:
        table = certificates.load()
        if table is None:
            columns = ", ".join(f"NULL::{_DUCK[str(f.type)]} AS {f.name}" for f in SCHEMA)
            con.execute(f"CREATE OR REPLACE VIEW certificates AS SELECT {columns} WHERE false")
        else:
            con.register("certificates_arrow", certificates.arrow(table))
            con.execute("CREATE OR REPLACE VIEW certificates AS SELECT * FROM certificates_arrow")
        if con.execute("SELECT 1 FROM duckdb_views() WHERE view_name = 'trades'").fetchone() is None:
            return  # no trades table yet
        con.execute("""
            CREATE OR REPLACE VIEW certified_trades AS
            SELECT t.* FROM trades t SEMI JOIN certificates c
            ON t.exchange = c.exchange AND t.symbol = c.symbol AND t.trade_date = c.day
               AND c.status IN ('certified', 'certified_with_exchange_gaps')""")

    return create


_DUCK = {"string": "VARCHAR", "date32[day]": "DATE", "int64": "BIGINT", "double": "DOUBLE"}
