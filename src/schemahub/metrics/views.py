"""SQL views over the run history: ``runs`` (one row per run), ``run_products`` (per product).

The records' columns are declared here once, so the views have the same types whether
there are no runs yet, runs of one command, or of all four.
"""

from __future__ import annotations

import duckdb

from schemahub.infra.storage import Storage
from schemahub.metrics.runs import RUNS_PREFIX

_EXCHANGE = ("STRUCT(exchange VARCHAR, requests BIGINT, retries BIGINT, rate_limited BIGINT, "
             "server_errors BIGINT, timeouts BIGINT, connection_errors BIGINT, malformed BIGINT, "
             "banned BIGINT, bytes BIGINT, limiter_wait_s DOUBLE, latency_s DOUBLE, "
             "statuses MAP(VARCHAR, BIGINT), latency_buckets BIGINT[], breaker_trips BIGINT, "
             "breaker_state VARCHAR)")
_PRODUCT = ("STRUCT(exchange VARCHAR, symbol VARCHAR, status VARCHAR, trades BIGINT, requests BIGINT, "
            "retries BIGINT, rate_limited BIGINT, server_errors BIGINT, bytes BIGINT, raw_bytes BIGINT, "
            "watermark_before BIGINT, watermark_after BIGINT, last_trade_time TIMESTAMPTZ, "
            "missing_ids BIGINT, duplicates_dropped BIGINT, quarantined BIGINT, unexplained_gaps BIGINT, "
            "elapsed_s DOUBLE, error VARCHAR)")
COLUMNS = {
    "run_id": "VARCHAR", "command": "VARCHAR", "host": "VARCHAR", "pid": "BIGINT",
    "started_at": "TIMESTAMPTZ", "finished_at": "TIMESTAMPTZ", "duration_s": "DOUBLE", "status": "VARCHAR",
    "error": "VARCHAR", "trades": "BIGINT", "exchanges": f"{_EXCHANGE}[]", "products": f"{_PRODUCT}[]",
    "details": "JSON",
}


def create(con: duckdb.DuckDBPyConnection, storage: Storage) -> None:
    """Create the views ``runs`` and ``run_products`` on ``con``."""
    has_runs = next(iter(storage.list(RUNS_PREFIX)), None) is not None
    if has_runs:
        columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
        pattern = storage.url_for(RUNS_PREFIX.rstrip("/")) + "/*/*.json"
        # The pattern comes from the lake URL (validated) and our own key layout.
        source = f"read_json('{pattern}', format = 'auto', columns = {columns})"
    else:
        source = "(SELECT " + ", ".join(f"NULL::{v} AS {k}" for k, v in COLUMNS.items()) + " WHERE false)"
    con.execute(f"CREATE OR REPLACE VIEW runs AS SELECT * FROM {source} ORDER BY started_at")  # noqa: S608
    con.execute("""
        CREATE OR REPLACE VIEW run_products AS
        SELECT run_id, command, host, started_at, run_status, unnest(p)
        FROM (SELECT run_id, command, host, started_at, status AS run_status, unnest(products) AS p
              FROM runs)""")
