"""Several transform processes on one lake share a backfill product by product, exactly once.

Real processes (the CLI), real leases (lease files on the local lake, DynamoDB on moto for
the S3 lake), one Delta table. Checked row by row against the simulator.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace

import orjson
import pytest

from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.server import Faults, Simulator
from tests.conftest import SimFactory
from tests.helpers import (
    assert_table_matches_truth,
    cli_args,
    cli_env,
    delta_table,
    held_leases,
    ingest,
    run_cli,
)
from tests.lakes import LakeLike, LakeRef

pytestmark = pytest.mark.slow

_BASE = simulator_class("binance").test_products[1]
# Six products of ~30,000 trades each over ~4 days: archive files, so ingest is quick.
PRODUCTS = [replace(_BASE, symbol=f"{base}-USDT", native_id=f"{base}USDT", first_id=first,
                    trades_per_s=0.09, history=30_000, gap_rate=0.0)
            for base, first in (("ETH", 1_000_001), ("BTC", 2_000_001), ("SOL", 3_000_001),
                                ("XRP", 4_000_001), ("ADA", 5_000_001), ("DOT", 6_000_001))]
SYMBOLS = [p.symbol for p in PRODUCTS]
SINCE_US = 1_794_700_800_000_000  # 2026-11-15


def _backfilled(lake: LakeLike, make_sim: SimFactory) -> Simulator:
    sim = make_sim(products=PRODUCTS, exchange="binance", faults=Faults(rate_limit=False))
    report = ingest(lake, sim, SYMBOLS, since_us=SINCE_US, source="archive", workers=6)
    assert all(p.error is None for p in report.products)
    return sim


def _version(lake: LakeLike) -> int:
    """The table's version (-1 before it exists)."""
    try:
        return int(delta_table(lake).version())
    except Exception:  # no table yet (delta-rs raises its own TableNotFoundError)
        return -1


def _transform(lake: LakeRef, sim: Simulator) -> subprocess.Popen[str]:
    return subprocess.Popen(cli_args("transform", "--round-ids", "1", "--json", "--lake", lake.url),
                            env=cli_env(sim, lake), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_transform_processes_share_the_products_and_commit_each_once(
        lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _backfilled(lake, make_sim)
    first, second = _transform(lake, sim), _transform(lake, sim)
    outputs = [proc.communicate(timeout=300) for proc in (first, second)]
    assert [proc.returncode for proc in (first, second)] == [0, 0], [err for _, err in outputs]
    reports = [orjson.loads(out) for out, _ in outputs]
    written = [{p["symbol"] for p in report["products"] if p["rows_written"]} for report in reports]
    assert written[0] | written[1] == set(SYMBOLS)
    assert not written[0] & written[1], "a product was transformed by both processes"
    # One round per product (--round-ids 1): a commit per product, whoever made it.
    assert sum(report["commits"] for report in reports) >= len(SYMBOLS)
    assert_table_matches_truth(lake, sim, SYMBOLS)
    assert not {name for name in held_leases(lake) if name.startswith("transform/")}


def test_sigkill_of_one_transform_process_loses_and_duplicates_nothing(lake: LakeRef,
                                                                       make_sim: SimFactory) -> None:
    sim = _backfilled(lake, make_sim)
    victim, other = _transform(lake, sim), _transform(lake, sim)
    # Kill the victim once the table has a commit beyond its creation (polling the lake).
    while victim.poll() is None and _version(lake) < 2:
        time.sleep(0.005)
    killed = victim.poll() is None
    victim.kill()
    victim.communicate()
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    # Whatever the victim held is free again (its process is dead); one more run finishes the job.
    final = run_cli("transform", "--json", "--lake", lake.url, env=cli_env(sim, lake))
    assert final.returncode == 0, final.stderr
    assert_table_matches_truth(lake, sim, SYMBOLS)
    if not killed:
        pytest.skip("the transform finished before it could be killed (the check above still ran)")
