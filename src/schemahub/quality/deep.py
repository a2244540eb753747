"""``check --deep``: re-map every committed raw file and compare it with the table, row by row.

Slow (it reads the whole raw window again) but exact: every column of every row, both
ways - a raw trade missing from the table, or a table row no raw file explains.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from schemahub.errors import ArchiveError
from schemahub.infra.storage import Storage
from schemahub.quality.checks import CheckResult
from schemahub.query.engine import QueryEngine
from schemahub.raw import files as raw_files
from schemahub.raw.layout import parse_key, product_prefix
from schemahub.table.delta import Cursor
from schemahub.transform import archives, engine
from schemahub.transform.mapping import packaged
from schemahub.transform.reader import RawFile, RawReader
from schemahub.transform.schema import SCHEMA

_SAMPLE = 20
_MISSING = ("SELECT * FROM expected_rows EXCEPT ALL "
            "(SELECT * FROM trades WHERE exchange = $exchange AND symbol = $symbol)")
_EXTRA = ("(SELECT * FROM trades WHERE exchange = $exchange AND symbol = $symbol) "
          "EXCEPT ALL SELECT * FROM expected_rows")


def _mapped(storage: Storage, reader: RawReader, exchange: str, symbol: str, windows: list[Cursor],
            quarantined: set[str], problems: list[str]) -> pa.Table:
    tables = []
    for file_id, info in enumerate(storage.list(product_prefix(exchange, symbol))):
        key = parse_key(info.key)
        if key is None or key.key in quarantined or not any(
                w.from_id < key.last_id <= w.through_id for w in windows):
            continue
        header = raw_files.read_header(storage.read(key.key) or b"", key.key)
        raw_file = RawFile(file_id, key.key, storage.url_for(key.key), exchange, symbol, header.mapping,
                           key.first_id, key.last_id, header.fetched_at.isoformat(), header.trade_count,
                           header.time_unit, header)
        mapping = packaged(exchange, header.mapping)
        if header.archive is not None:  # the zip is checked against the venue's digest too
            try:
                tables += [part.table for part in archives.applied(storage, raw_file, mapping, verify=True)]
            except ArchiveError as exc:
                problems.append(f"{key.key}: {exc}")
        else:
            tables.append(engine.apply(mapping, reader.read([raw_file], mapping)).table)
    if not tables:
        return SCHEMA.empty_table()
    unique, _ = engine.unique_trades(pa.concat_tables(tables))
    return unique


def compare_raw_with_table(storage: Storage, query: QueryEngine, windows: dict[tuple[str, str], list[Cursor]],
                           quarantined: set[str]) -> CheckResult:
    reader = RawReader(access=storage.access())
    details: list[dict[str, Any]] = []
    try:
        for (exchange, symbol), product_windows in sorted(windows.items()):
            problems: list[str] = []
            expected = _mapped(storage, reader, exchange, symbol, product_windows, quarantined, problems)
            query.con.register("expected_rows", expected)
            params = {"exchange": exchange, "symbol": symbol}
            missing = query.sql(_MISSING, params)
            extra = query.sql(_EXTRA, params)
            query.con.unregister("expected_rows")
            details.append({"exchange": exchange, "symbol": symbol, "raw_rows": expected.num_rows,
                            "missing_from_table": missing.num_rows, "not_in_raw": extra.num_rows,
                            "unreadable_raw": problems,
                            "samples": (missing.slice(0, _SAMPLE).to_pylist()
                                        + extra.slice(0, _SAMPLE).to_pylist())})
    finally:
        reader.close()
    bad = [d for d in details if d["missing_from_table"] or d["not_in_raw"] or d["unreadable_raw"]]
    if bad:
        return CheckResult("deep-reconciliation", "fail",
                           f"{len(bad)} product(s) differ from their raw files", details)
    return CheckResult("deep-reconciliation", "ok",
                       f"every row of {len(details)} product(s) equals its re-mapped raw trade", details)
