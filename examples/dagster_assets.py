"""SchemaHub's stages as Dagster assets: ingest -> transform -> repair -> certify -> check.

    pip install 'schemahub[dagster]'
    SCHEMAHUB_LAKE=./lake dagster dev -f examples/dagster_assets.py

Each asset calls the Python API and returns its typed report's summary as metadata; a stage
that fails raises, so Dagster marks the run failed and the next materialization resumes
from the lake's checkpoints (every stage is idempotent and exactly-once).
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotations at definition.
import os
from datetime import timedelta

from dagster import (
    AssetExecutionContext,
    Definitions,
    MaterializeResult,
    ScheduleDefinition,
    asset,
    define_asset_job,
)

import schemahub

EXCHANGES = os.environ.get("DAGSTER_EXCHANGES", "coinbase,binance,kraken").split(",")
PRODUCTS = os.environ.get("DAGSTER_PRODUCTS", "").split(",") if os.environ.get("DAGSTER_PRODUCTS") else None
"""None: each exchange's seed file (`schemahub update-seed`)."""


def _lake() -> schemahub.Lake:
    return schemahub.open_lake(os.environ.get("SCHEMAHUB_LAKE", "./lake"))


@asset(description="New trades from each exchange into the raw lake (one report per exchange).")
def raw_trades(context: AssetExecutionContext) -> MaterializeResult:
    reports = _lake().ingest(EXCHANGES, products=PRODUCTS)
    failed = [f"{r.exchange}: {r.error or 'see products'}" for r in reports if not r.ok]
    if failed:
        raise RuntimeError("; ".join(failed))
    return MaterializeResult(metadata={"trades": sum(p.trades for r in reports for p in r.products)})


@asset(deps=[raw_trades], description="The unified Delta table, exactly once.")
def trades_table(context: AssetExecutionContext) -> MaterializeResult:
    report = _lake().transform()
    if report.needs_attention:
        raise RuntimeError(f"quarantined raw files: {[q.key for q in report.quarantined]}")
    return MaterializeResult(metadata={"rows_written": sum(p.rows_written for p in report.products),
                                       "table_version": report.table_version_after})


@asset(deps=[trades_table], description="What is missing for a known reason, fetched again.")
def repaired(context: AssetExecutionContext) -> MaterializeResult:
    report = _lake().repair(EXCHANGES)
    if report.failed:
        raise RuntimeError("a repair failed: see the run history (SELECT * FROM runs)")
    return MaterializeResult(metadata={"items": len(report.items)})


@asset(deps=[repaired], description="Completeness certificates of the closed days.")
def certificates(context: AssetExecutionContext) -> MaterializeResult:
    report = _lake().certify(EXCHANGES)
    return MaterializeResult(metadata={"computed": report.computed, **report.by_status})


@asset(deps=[certificates], description="Data-quality checks; fails the run when one fails.")
def checked(context: AssetExecutionContext) -> MaterializeResult:
    results = _lake().check(freshness=timedelta(hours=2))
    failed = [f"{r.name}: {r.summary}" for r in results if r.status == "fail"]
    if failed:
        raise RuntimeError("; ".join(failed))
    return MaterializeResult(metadata={"checks": len(results)})


routine = define_asset_job("schemahub_routine", selection="*")
defs = Definitions(assets=[raw_trades, trades_table, repaired, certificates, checked], jobs=[routine],
                   schedules=[ScheduleDefinition(job=routine, cron_schedule="*/15 * * * *")])
