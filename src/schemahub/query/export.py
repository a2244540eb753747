"""Files per (exchange, symbol, UTC day) in a layout other tools already read.

Layouts:

* ``tardis``: the columns of Tardis.dev's ``trades`` datasets - ``exchange, symbol,
  timestamp, local_timestamp, id, side, price, amount`` (times in µs since the epoch;
  ``local_timestamp`` is when SchemaHub fetched the trade, ``side`` the taker's) - one file
  per day named as Tardis names them: ``<exchange>_trades_<YYYY-MM-DD>_<symbol>.csv.gz``.
  Symbols are SchemaHub's normalized ones (``BTC-USDT``).
* ``native``: the unified table's columns, ``<exchange>/<symbol>/<YYYY-MM-DD>.<ext>``.

Beside each data file, ``<file>.certificate.json`` holds the day's completeness certificate
(null when the day has none yet) and what the export wrote: the day's content hash (the
certificates' canonical md5 of the rows), row count, the file's sha256, format, layout and
the table version. Every file is written whole or not at all (a temp file renamed into
place; one PUT on S3): a SIGKILL leaves no partial file. A rerun skips a day whose sidecar
names the same content hash, format and layout and whose data file still has the recorded
sha256 - so an export is resumable, and a day whose rows changed is written again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from isal import igzip

from schemahub.errors import ConfigError
from schemahub.infra.storage import Storage
from schemahub.query.day_stats import DAY_STATS_SQL
from schemahub.stop import StopToken

if TYPE_CHECKING:
    from schemahub.query.engine import QueryEngine

Format = Literal["csv.gz", "parquet"]
Layout = Literal["tardis", "native"]
FORMATS: tuple[Format, ...] = ("csv.gz", "parquet")
LAYOUTS: tuple[Layout, ...] = ("tardis", "native")
TARDIS_COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")


@dataclass(frozen=True)
class ExportRequest:
    exchanges: list[str] | None = None
    symbols: list[str] | None = None
    start: date | None = None
    end: date | None = None
    """Inclusive UTC days; None: from the first, to the last day in the table."""
    fmt: Format = "csv.gz"
    layout: Layout = "tardis"

    def __post_init__(self) -> None:  # checked before anything is opened or created
        if self.fmt not in FORMATS or self.layout not in LAYOUTS:
            raise ConfigError(f"--format {self.fmt!r} / --layout {self.layout!r}: formats are "
                              f"{', '.join(FORMATS)}; layouts {', '.join(LAYOUTS)}")


@dataclass
class ExportReport:
    table_version: int
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Files already there with the same content (a resumed export)."""
    rows: int = 0
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"table_version": self.table_version, "written": self.written, "skipped": self.skipped,
                "rows": self.rows, "interrupted": self.interrupted}


def file_name(layout: Layout, fmt: Format, exchange: str, symbol: str, day: date) -> str:
    if layout == "tardis":
        return f"{exchange}_trades_{day.isoformat()}_{symbol}.{fmt}"
    return f"{exchange}/{symbol}/{day.isoformat()}.{fmt}"


def export(engine: QueryEngine, certificates: Iterable[dict[str, Any]], dest: Storage, request: ExportRequest,
           stop: StopToken | None = None, on_file: Callable[[str, bool], None] | None = None) -> ExportReport:
    """Write every (exchange, symbol, day) of the request to ``dest``; see the module docstring."""
    if engine.version is None:
        raise ConfigError("there is no trades table yet: run `schemahub transform` first")
    stop = stop or StopToken()
    report = ExportReport(engine.version)
    issued = {(c["exchange"], c["symbol"], c["day"]): c for c in certificates}
    for exchange, days in _days(engine, request).items():
        for stat in engine.sql(DAY_STATS_SQL, {"exchange": exchange, "days": sorted(days)}).to_pylist():
            if request.symbols and stat["symbol"] not in request.symbols:
                continue
            if stop.stopped:
                report.interrupted = True
                return report
            name = file_name(request.layout, request.fmt, exchange, stat["symbol"], stat["day"])
            wanted = {"content_hash": stat["content_hash"], "rows": stat["trades"], "format": request.fmt,
                      "layout": request.layout}
            if _already_there(dest, name, wanted):
                report.skipped.append(name)
            else:
                data = _encode(_day_rows(engine, exchange, stat["symbol"], stat["day"]), request)
                dest.write(name, data)  # whole or absent (temp + rename; one PUT)
                sidecar = {**wanted, "sha256": hashlib.sha256(data).hexdigest(),
                           "table_version": report.table_version,
                           "certificate": _plain(issued.get((exchange, stat["symbol"], stat["day"])))}
                dest.write(f"{name}.certificate.json", json.dumps(sidecar, sort_keys=True, indent=1).encode())
                report.written.append(name)
            report.rows += stat["trades"]
            if on_file is not None:
                on_file(name, name in report.skipped)
    return report


def _days(engine: QueryEngine, request: ExportRequest) -> dict[str, set[date]]:
    clauses: list[str] = ["true"]
    params: dict[str, Any] = {}
    if request.exchanges:
        clauses.append("list_contains($exchanges, exchange)")
        params["exchanges"] = request.exchanges
    if request.start is not None:
        clauses.append("trade_date >= $start")
        params["start"] = request.start
    if request.end is not None:
        clauses.append("trade_date <= $end")
        params["end"] = request.end
    where = " AND ".join(clauses)
    rows = engine.sql(f"SELECT DISTINCT exchange, trade_date FROM trades WHERE {where}", params)  # noqa: S608
    out: dict[str, set[date]] = {}
    for row in rows.to_pylist():
        out.setdefault(row["exchange"], set()).add(row["trade_date"])
    return out


def _day_rows(engine: QueryEngine, exchange: str, symbol: str, day: date) -> pa.Table:
    return engine.sql("SELECT * FROM trades WHERE exchange = $exchange AND trade_date = $day "
                      "AND symbol = $symbol ORDER BY trade_ts, TRY_CAST(trade_id AS BIGINT), trade_id",
                      {"exchange": exchange, "day": day, "symbol": symbol})


def tardis_columns(rows: pa.Table) -> pa.Table:
    """The unified rows in Tardis' trades columns."""
    micros = pa.timestamp("us", tz="UTC")
    return pa.table({
        "exchange": rows["exchange"], "symbol": rows["symbol"],
        "timestamp": pc.cast(pc.cast(rows["trade_ts"], micros), pa.int64()),
        "local_timestamp": pc.cast(pc.cast(rows["ingest_ts"], micros), pa.int64()),
        "id": rows["trade_id"], "side": rows["side"], "price": rows["price"], "amount": rows["quantity"],
    })


def _encode(rows: pa.Table, request: ExportRequest) -> bytes:
    table = tardis_columns(rows) if request.layout == "tardis" else rows
    buffer = io.BytesIO()
    if request.fmt == "parquet":
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue()
    pcsv.write_csv(table, buffer, pcsv.WriteOptions(quoting_style="needed"))
    return igzip.compress(buffer.getvalue(), compresslevel=2)


def _already_there(dest: Storage, name: str, wanted: dict[str, Any]) -> bool:
    raw = dest.read(f"{name}.certificate.json")
    if raw is None:
        return False
    try:
        sidecar = json.loads(raw)
    except ValueError:
        return False  # a sidecar we cannot read is rewritten
    if any(sidecar.get(k) != v for k, v in wanted.items()):
        return False
    data = dest.read(name)
    return data is not None and hashlib.sha256(data).hexdigest() == sidecar.get("sha256")


def _plain(certificate: dict[str, Any] | None) -> dict[str, Any] | None:
    if certificate is None:
        return None
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in certificate.items()}
