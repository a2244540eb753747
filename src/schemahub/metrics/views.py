"""SQL views over the run history: ``runs`` (one row per run), ``run_products`` (per product).

The column types come from the record models themselves (metrics/runs.py, and the HTTP
counters in metrics/counters.py), so the views have the same types whether there are no
runs yet, runs of one command, or of all of them.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any

import duckdb
from pydantic import BaseModel

from schemahub.infra.storage import Storage
from schemahub.metrics.runs import RUNS_PREFIX, ExchangeRun, RunProduct, RunRecord

_SCALAR = {int: "BIGINT", float: "DOUBLE", str: "VARCHAR", bool: "BOOLEAN", datetime: "TIMESTAMPTZ"}


def sql_type(annotation: Any) -> str:
    """The DuckDB type of a record field's annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (types.UnionType, typing.Union) and len(args) == 1:
        return sql_type(args[0])
    if origin is list:
        return f"{sql_type(args[0])}[]"
    if origin is dict:
        return f"MAP({sql_type(args[0])}, {sql_type(args[1])})"
    if origin is typing.Literal:
        return "VARCHAR"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return struct(annotation)
    if annotation in _SCALAR:
        return _SCALAR[annotation]
    return "JSON"


def struct(model: type[BaseModel]) -> str:
    return "STRUCT(" + ", ".join(f"{name} {sql_type(info.annotation)}"
                                 for name, info in model.model_fields.items()) + ")"


def columns() -> dict[str, str]:
    out = {name: sql_type(info.annotation) for name, info in RunRecord.model_fields.items()}
    out["exchanges"] = f"{struct(ExchangeRun)}[]"
    out["products"] = f"{struct(RunProduct)}[]"
    out["details"] = "JSON"
    out.pop("format", None)
    return out


def run_history(storage: Storage) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """A view hook (for ``QueryEngine``) that creates ``runs`` and ``run_products``."""

    def create(con: duckdb.DuckDBPyConnection) -> None:
        types_ = columns()
        has_runs = next(iter(storage.list(RUNS_PREFIX)), None) is not None
        if has_runs:
            spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in types_.items()) + "}"
            pattern = storage.url_for(RUNS_PREFIX.rstrip("/")) + "/*/*.json"
            # The pattern comes from the lake URL (validated) and our own key layout.
            source = f"read_json('{pattern}', format = 'auto', columns = {spec})"
        else:
            source = "(SELECT " + ", ".join(f"NULL::{v} AS {k}" for k, v in types_.items()) + " WHERE false)"
        con.execute(f"CREATE OR REPLACE VIEW runs AS SELECT * FROM {source} ORDER BY started_at")  # noqa: S608
        con.execute("""
            CREATE OR REPLACE VIEW run_products AS
            SELECT run_id, command, host, started_at, run_status, unnest(p)
            FROM (SELECT run_id, command, host, started_at, status AS run_status, unnest(products) AS p
                  FROM runs)""")

    return create
