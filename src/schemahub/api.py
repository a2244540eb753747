"""The Python API: the lake as objects, for notebooks and orchestrators.

```python
import schemahub

lake = schemahub.open_lake("./lake")                       # or "s3://bucket/prefix"
day = lake.trades("BTC-USDT", start="2026-11-17", end="2026-11-18").to_polars()
bars = lake.bars("BTC-USDT", "1m", exchange="binance").to_pandas()
volume_bars = lake.bars("BTC-USDT", kind="volume", size=10).to_arrow()   # every exchange
lake.sql("SELECT exchange, count(*) FROM trades GROUP BY ALL").to_arrow()
```

A :class:`Lake` reads one pinned version of the trades table: every query of it sees the same
rows until :meth:`Lake.refresh` (or :meth:`Lake.as_of` for an older version). The stages
(:meth:`Lake.ingest`, :meth:`Lake.transform`, :meth:`Lake.repair`, :meth:`Lake.certify`,
:meth:`Lake.check`, :meth:`Lake.export`) return the typed reports the CLI prints; nothing
here prints, exits or configures logging. Errors are :class:`schemahub.errors.SchemahubError`
subclasses (``ConfigError`` for bad input, ``QueryError`` for SQL that fails).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from schemahub import pipeline
from schemahub.errors import ConfigError
from schemahub.identifiers import exchange_name
from schemahub.identifiers import symbol as valid_symbol
from schemahub.settings import Settings
from schemahub.sources.registry import DEFAULT_EXCHANGE
from schemahub.stop import StopToken
from schemahub.timeutil import duration

if TYPE_CHECKING:
    import pandas
    import polars

    from schemahub.ingest.report import IngestReport
    from schemahub.quality.certificates import CertifyReport
    from schemahub.quality.checks import CheckResult
    from schemahub.query.engine import QueryEngine
    from schemahub.query.export import ExportReport, Format, Layout
    from schemahub.transform.report import TransformReport

Moment = datetime | date | str
"""A point in time: an aware datetime, a date (its UTC midnight), or ISO-8601 text (UTC unless it says)."""
BarKind = Literal["time", "volume", "tick", "dollar"]

_ORDER = "trade_ts, exchange, TRY_CAST(trade_id AS BIGINT), trade_id"
"""The order of trades within and across venues: time, then venue, then id."""


def open_lake(url: str | None = None, *, env: Mapping[str, str] | None = None) -> Lake:
    """The lake at ``url`` (a path or ``s3://bucket/prefix``; default ``SCHEMAHUB_LAKE`` or ``./lake``).

    Settings come from ``env`` (default: this process's environment), exactly as for the CLI:
    ``SCHEMAHUB_LOCKS``, ``AWS_*``, the exchanges' URLs, ...
    """
    return Lake(Settings.load(url, env))


@dataclass(frozen=True)
class _TradeFilter:
    """What ``Lake.trades`` asked for, kept to read it with polars directly (a local lake)."""

    symbol: str | None
    exchanges: list[str] | None
    start: datetime | None
    end: datetime | None
    ordered: bool


@dataclass
class Relation:
    """A query not run yet: run it with ``to_arrow``, ``to_polars``, ``to_pandas`` or ``count``."""

    lake: Lake
    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    trade_filter: _TradeFilter | None = None
    """Set for a plain read of the trades table: ``to_polars`` then scans the pinned version's
    Parquet files with polars itself (same rows, same order; no DuckDB -> Arrow -> polars
    conversion, which costs about as much as the read)."""

    def to_arrow(self) -> pa.Table:
        return self.lake.engine.script(self.sql, self.params)[-1].table

    def to_polars(self) -> polars.DataFrame:
        import polars  # optional: pip install 'schemahub[frames]'

        if self.trade_filter is not None and (files := self.lake.local_files()) is not None:
            return _polars_trades(files, self.trade_filter)
        frame = polars.from_arrow(self.to_arrow())
        assert isinstance(frame, polars.DataFrame)
        return frame

    def to_pandas(self) -> pandas.DataFrame:
        frame: pandas.DataFrame = self.to_arrow().to_pandas()  # optional: pip install 'schemahub[frames]'
        return frame

    def count(self) -> int:
        result = self.lake.engine.script(f"SELECT count(*) AS n FROM ({self.sql})", self.params)  # noqa: S608
        return int(result[-1].table["n"][0].as_py())

    def explain(self) -> str:
        """DuckDB's profile of running it (``EXPLAIN ANALYZE``): files and row groups read, ..."""
        result = self.lake.engine.script(f"EXPLAIN ANALYZE {self.sql}", self.params)[-1].table
        return "\n".join(str(v) for v in result.column(result.num_columns - 1).to_pylist())


class Lake:
    """A SchemaHub lake, its trades table pinned at one version (see the module docstring)."""

    def __init__(self, settings: Settings, *, version: int | None = None,
                 as_of: datetime | None = None) -> None:
        self.settings = settings
        self._pin = (version, as_of)
        self._engine: QueryEngine | None = None

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lake({self.settings.lake!r}, version={self.version})"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    @property
    def engine(self) -> QueryEngine:
        """The DuckDB session on the pinned version (opened on first use)."""
        if self._engine is None:
            version, as_of = self._pin
            self._engine = pipeline.query_engine(self.settings, version=version, as_of=as_of)
        return self._engine

    def local_files(self) -> list[str] | None:
        """The pinned version's Parquet files, on a local lake whose files spell their
        partitions (None otherwise: object stores, tables other writers laid out)."""
        engine = self.engine
        if engine.snapshot is None or "://" in engine.table.uri:
            return None
        return engine.table.data_files(engine.snapshot)

    @property
    def version(self) -> int | None:
        """The trades table version every query reads (None: no table yet)."""
        return self.engine.version

    def as_of(self, when: int | Moment) -> Lake:
        """The same lake at a table version (an int) or as it was at a time."""
        if isinstance(when, int):
            return Lake(self.settings, version=when)
        return Lake(self.settings, as_of=_moment(when, "as_of"))

    def refresh(self) -> Lake:
        """Read the newest version from now on (what stages committed since)."""
        self.close()
        self._pin = (None, None)
        return self

    # -- reading ---------------------------------------------------------------------------

    def trades(self, symbol: str | None = None, exchange: str | Sequence[str] | None = None,
               start: Moment | None = None, end: Moment | None = None,
               certified_only: bool = False, ordered: bool = True) -> Relation:
        """Trades in [start, end), ordered by time (then venue and id; ``ordered=False``: in
        file order, which saves a sort of the whole result). Filters are pushed down: exchange
        and day prune partitions (whole files), symbol and time skip row groups.
        ``certified_only``: only the rows of days whose certificate is (with exchange gaps) certified."""
        where, params = _filters(symbol, exchange, start, end)
        source = "certified_trades" if certified_only else "trades"
        order = f" ORDER BY {_ORDER}" if ordered else ""
        venues = [exchange] if isinstance(exchange, str) else list(exchange) if exchange else None
        plain = None if certified_only else _TradeFilter(params.get("symbol"), venues, params.get("start"),
                                                         params.get("end"), ordered)
        return Relation(self, f"SELECT * FROM {source} WHERE {where}{order}", params, plain)  # noqa: S608

    def bars(self, symbol: str, interval: str = "1m", exchange: str | Sequence[str] | None = None,
             start: Moment | None = None, end: Moment | None = None, kind: BarKind = "time",
             size: float | None = None) -> Relation:
        """OHLCV bars of one symbol, computed in DuckDB; every venue's trades together (consolidated)
        when ``exchange`` is None.

        ``kind="time"``: one bar per ``interval`` (``30s``, ``1m``, ``4h``, ``1d``) that has trades,
        labelled by its start. ``"tick"``: ``size`` trades a bar; ``"volume"``: bars cut at every
        multiple of ``size`` of the cumulative quantity (base units) - bar k holds the trades
        whose cumulative quantity *before* them lies in [k x size, (k+1) x size), so the trade
        that crosses a multiple closes its bar and the next bar starts with the next trade (a
        bar's quantity is ``size`` on average, off by at most one trade's); ``"dollar"``: the
        same with notional (price x quantity). Computed with window sums in one statement;
        the cumulative sums are exact (DECIMAL(38, 10) inputs). Columns: ``bar`` (time bars:
        its start; others: its index), ``first_trade``, ``last_trade``, ``open``, ``high``,
        ``low``, ``close``, ``volume``, ``notional``, ``vwap``, ``trades``, ``buy_volume``,
        ``sell_volume`` (by the taker's side).
        """
        where, params = _filters(symbol, exchange, start, end)
        if kind == "time":
            params["width"] = _interval_us(interval)
            key = "epoch_us(trade_ts) // $width"
            label = "make_timestamp(bar * $width)::TIMESTAMPTZ AS bar"
        elif kind in ("tick", "volume", "dollar"):
            if size is None or not size > 0:
                raise ConfigError(f"{kind} bars need a positive size (got {size!r})")
            params["size"] = size
            measure = {"tick": "1", "volume": "qty", "dollar": "qty * px"}[kind]
            key = (f"floor((sum({measure}) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) - {measure}) "
                   f"/ CAST($size AS DECIMAL(38, 10)))::BIGINT")
            label = "bar"
        else:
            raise ConfigError(f"kind {kind!r}: use time, volume, tick or dollar")
        sql = f"""
            WITH t AS (
                SELECT trade_ts, side, price, quantity,
                       CAST(quantity AS DECIMAL(38, 10)) AS qty, CAST(price AS DECIMAL(38, 10)) AS px,
                       row_number() OVER (ORDER BY {_ORDER}) AS seq
                FROM trades WHERE {where}),
            b AS (SELECT *, {key} AS bar FROM t)
            SELECT {label}, min(trade_ts) AS first_trade, max(trade_ts) AS last_trade,
                   arg_min(price, seq) AS open, max(price) AS high, min(price) AS low,
                   arg_max(price, seq) AS close, sum(qty)::DOUBLE AS volume,
                   sum(qty * px)::DOUBLE AS notional, (sum(qty * px) / sum(qty))::DOUBLE AS vwap,
                   count(*) AS trades,
                   coalesce(sum(qty) FILTER (WHERE side = 'buy'), 0)::DOUBLE AS buy_volume,
                   coalesce(sum(qty) FILTER (WHERE side = 'sell'), 0)::DOUBLE AS sell_volume
            FROM b GROUP BY b.bar ORDER BY b.bar"""  # noqa: S608 - validated names, bound values
        return Relation(self, sql, params)

    def sql(self, query: str, params: Mapping[str, Any] | None = None) -> Relation:
        """Any read-only SQL over the pinned version: views ``trades``, ``certified_trades``,
        ``certificates`` and ``runs``; ``$name`` placeholders filled from ``params``."""
        return Relation(self, query, dict(params or {}))

    def certificates(self, exchange: str | None = None) -> pa.Table:
        """The completeness certificates (one row per exchange, symbol and closed day)."""
        from schemahub.quality.certificates import Certificates

        rows = Certificates(pipeline.open_backends(self.settings, create=False).storage).rows()
        return pa.Table.from_pylist([r for r in rows if exchange is None or r["exchange"] == exchange])

    # -- the stages ------------------------------------------------------------------------

    def ingest(self, exchanges: Sequence[str] = (DEFAULT_EXCHANGE,), products: Sequence[str] | None = None,
               since: Moment | None = None, stop: StopToken | None = None) -> list[IngestReport]:
        """Fetch new trades (``exchanges=["all"]`` for every venue), one report per exchange."""
        from schemahub.ingest import exchanges as ingest_exchanges

        names = ingest_exchanges.resolve_exchanges(list(exchanges))
        since_us = None if since is None else int(_moment(since, "since").timestamp() * 1_000_000)
        options_for = ingest_exchanges.planned_options(
            self.settings, since_us=since_us, workers=None, chunk_concurrency=None, lock_wait_s=0.0, job=None,
            rate=None, products=len(products) if products else None)
        request = ingest_exchanges.IngestRequest(names, list(products) if products else None, options_for)
        return pipeline.ingest(self.settings, request, stop=stop)

    def transform(self, rebuild: bool = False, stop: StopToken | None = None) -> TransformReport:
        from schemahub.transform.report import TransformOptions

        return pipeline.transform(self.settings, TransformOptions(rebuild=rebuild), stop=stop)

    def repair(self, exchanges: Sequence[str] = ("all",), dry_run: bool = False,
               stop: StopToken | None = None) -> pipeline.RepairReport:
        from schemahub.ingest import exchanges as ingest_exchanges

        names = ingest_exchanges.resolve_exchanges(list(exchanges))
        return pipeline.repair(self.settings, names, dry_run=dry_run, stop=stop)

    def certify(self, exchanges: Sequence[str] | None = None, cross_check: bool = True,
                stop: StopToken | None = None) -> CertifyReport:
        return pipeline.certify(self.settings, set(exchanges) if exchanges else None, cross_check=cross_check,
                                stop=stop)

    def check(self, freshness: timedelta = timedelta(hours=2), deep: bool = False) -> list[CheckResult]:
        from schemahub.quality.options import CheckOptions

        return pipeline.check(self.settings, CheckOptions(freshness=freshness, deep=deep))

    def export(self, output: str, *, exchanges: Sequence[str] | None = None,
               symbols: Sequence[str] | None = None, start: date | None = None, end: date | None = None,
               fmt: Format = "csv.gz",
               layout: Layout = "tardis", stop: StopToken | None = None) -> ExportReport:
        """Files per (exchange, symbol, day) under ``output`` (a folder or ``s3://``), with each
        day's certificate beside it; see ``schemahub.query.export``."""
        from schemahub.query.export import ExportRequest

        request = ExportRequest(list(exchanges) if exchanges else None, list(symbols) if symbols else None,
                                start, end, fmt, layout)
        return pipeline.export(self.settings, output, request, engine=self.engine, stop=stop)


def _filters(symbol: str | None, exchange: str | Sequence[str] | None, start: Moment | None,
             end: Moment | None) -> tuple[str, dict[str, Any]]:
    """A WHERE clause and its parameters. Exchange names are validated and inlined (so DuckDB
    prunes partitions by them); everything else is a bound parameter."""
    clauses: list[str] = ["true"]
    params: dict[str, Any] = {}
    if symbol is not None:
        clauses.append("symbol = $symbol")
        params["symbol"] = valid_symbol(symbol)
    if exchange is not None:
        names = [exchange] if isinstance(exchange, str) else list(exchange)
        clauses.append("exchange IN (" + ", ".join(f"'{exchange_name(n)}'" for n in names) + ")")
    if start is not None:
        begin = _moment(start, "start")
        clauses += ["trade_ts >= $start", "trade_date >= $start_day"]
        params.update(start=begin, start_day=begin.astimezone(UTC).date())
    if end is not None:
        finish = _moment(end, "end")
        clauses += ["trade_ts < $end", "trade_date <= $end_day"]
        # the last day with a trade before `end` (an end at midnight does not read the next day)
        params.update(end=finish, end_day=(finish - timedelta(microseconds=1)).astimezone(UTC).date())
    return " AND ".join(clauses), params


def _polars_trades(files: list[str], wanted: _TradeFilter) -> polars.DataFrame:
    """``Lake.trades`` read by polars from the pinned files: the same rows, columns and order."""
    import polars as pl

    from schemahub.transform.schema import COLUMNS

    frame = pl.scan_parquet(files, hive_partitioning=True,
                            hive_schema={"exchange": pl.String, "trade_date": pl.Date})
    if wanted.symbol is not None:
        frame = frame.filter(pl.col("symbol") == wanted.symbol)
    if wanted.exchanges is not None:
        frame = frame.filter(pl.col("exchange").is_in(wanted.exchanges))
    if wanted.start is not None:
        frame = frame.filter(pl.col("trade_ts") >= wanted.start)
    if wanted.end is not None:
        frame = frame.filter(pl.col("trade_ts") < wanted.end)
    frame = frame.select([c.name for c in COLUMNS])
    if wanted.ordered:
        numeric = pl.col("trade_id").cast(pl.Int64, strict=False)
        frame = frame.sort([pl.col("trade_ts"), pl.col("exchange"), numeric, pl.col("trade_id")],
                           nulls_last=True)
    return frame.collect()


def _moment(value: Moment, name: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), UTC)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not an ISO-8601 date or time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _interval_us(interval: str) -> int:
    span = duration(interval)
    if not span:  # None, or zero
        raise ConfigError(f"interval {interval!r}: use a number and s, m, h or d (30s, 1m, 4h, 1d)")
    return span // timedelta(microseconds=1)
