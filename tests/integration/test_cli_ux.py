"""The command line as a new user meets it: plans that match the run, plain messages,
consistent flags, read-only queries, several statements, and options in any position."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from schemahub.simulator.server import Faults, Simulator
from schemahub.sources.registry import list_exchanges
from tests.conftest import SimFactory
from tests.helpers import TRADED, cli_env, ingest, run_cli, transform
from tests.lakes import LakeRef

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("exchange", list_exchanges())
def test_the_dry_run_estimate_is_within_2x_of_the_run(tmp_path: Path, make_sim: SimFactory,
                                                      exchange: str) -> None:
    """Against the simulator enforcing the venue's documented limit, with default client limits."""
    from schemahub.simulator.catalog import simulator_class
    from schemahub.sources.registry import source_class

    if source_class(exchange).paging == "archive":
        pytest.skip(f"{exchange} downloads archive files, whose time is bandwidth, not a rate limit: its "
                    "plan counts the files (tested in test_bybit_archive)")
    limits = simulator_class(exchange).limits
    sim = make_sim(exchange=exchange, faults=Faults(rate_limit=True, **limits))  # type: ignore[arg-type]
    lake = str(tmp_path / "lake")
    # one product where a run of it lasts seconds (the estimate is per product); all of them on
    # Binance (one product fits in its burst: nothing to estimate) and Bitfinex (its plan leaves
    # out the product-list request, a quarter of a one-product run at 15 requests a minute)
    products = TRADED[exchange] if exchange in ("binance", "bitfinex") else TRADED[exchange][:1]
    args = ["ingest", "--exchange", exchange, "--products", ",".join(products),
            "--since", "2020-01-01", "--json", "--lake", lake]
    plan = run_cli(*args, "--dry-run", env=cli_env(sim))
    assert plan.returncode == 0, plan.stderr
    planned = orjson.loads(plan.stdout)
    assert all(p["planned_requests"] > 0 for p in planned["products"])
    run = run_cli(*args, env=cli_env(sim))
    assert run.returncode == 0, run.stderr
    report = orjson.loads(run.stdout)
    from datetime import datetime

    took = (datetime.fromisoformat(report["finished_at"]) - datetime.fromisoformat(report["started_at"]))
    seconds = took.total_seconds()
    requests = sum(p["stats"]["requests"] for p in report["products"])
    planned_requests = sum(p["planned_requests"] for p in planned["products"])
    assert planned_requests / 2 <= requests <= planned_requests * 2, (planned_requests, requests)
    estimate = planned["estimated_seconds"]
    assert seconds / 2 <= estimate <= seconds * 2 + 1.0, (estimate, seconds)


def test_plain_messages_without_python_internals(tmp_path: Path, sim: Simulator) -> None:
    lake = str(tmp_path / "lake")
    seeded = run_cli("update-seed", "--filter", "^BTC-USD$", "--lake", lake, env=cli_env(sim))
    assert "wrote 1 coinbase product to" in seeded.stdout
    assert run_cli("ingest", "--since", "2020-01-01", "--rate", "1000", "--lake", lake,
                   env=cli_env(sim)).returncode == 0
    first = run_cli("transform", "--lake", lake, env=cli_env(None))
    assert "created the table (version" in first.stdout and "None" not in first.stdout
    compacted = run_cli("compact", "--lake", lake, env=cli_env(None))
    again = run_cli("compact", "--lake", lake, env=cli_env(None))
    assert compacted.returncode == again.returncode == 0
    assert "nothing to compact" in again.stdout and "0 files rewritten into 0" not in again.stdout
    checked = run_cli("check", "--freshness", "1s", "--lake", lake, env=cli_env(None))
    assert checked.returncode == 1
    details = [line for line in checked.stdout.splitlines() if line.startswith("freshness:")]
    assert details and all("{'" not in line and "': " not in line for line in details)
    assert "lag_s=" in details[0]
    for command in (["query", "--help"], ["ingest", "--help"], ["quarantine", "release", "--help"]):
        text = run_cli(*command, env=cli_env(None)).stdout
        assert "<str>" not in text and "list[str]" not in text and "<int" not in text, text


def test_flags_mean_one_thing_everywhere() -> None:
    query = run_cli("query", "--help", env=cli_env(None)).stdout
    assert "-p," not in query and "--param NAME=VALUE" in query  # -p is --products, everywhere
    for command in ("ingest", "checkpoints rebuild"):
        assert "-p, --products" in run_cli(*command.split(), "--help", env=cli_env(None)).stdout
    simulate = run_cli("simulate", "--help", env=cli_env(None)).stdout
    assert all(name in simulate for name in list_exchanges())


@pytest.fixture
def lake_with_table(tmp_path: Path, sim: Simulator) -> LakeRef:
    lake = LakeRef(str(tmp_path / "lake"))
    assert ingest(lake, sim, ["BTC-USD"]).ok
    transform(lake)
    return lake


def test_query_runs_every_statement_and_is_read_only_by_default(lake_with_table: LakeRef,
                                                                tmp_path: Path) -> None:
    lake = lake_with_table.url
    both = run_cli("query", "SELECT count(*) AS n FROM trades; SELECT 42 AS answer", "--format", "json",
                   "--lake", lake, env=cli_env(None))
    assert both.returncode == 0, both.stderr
    results = [orjson.loads(line) for line in both.stdout.splitlines()]
    assert results[0]["n"] > 0 and results[1] == {"answer": 42}
    target = tmp_path / "copy.csv"
    refused = run_cli("query", f"COPY (SELECT * FROM trades) TO '{target}'", "--lake", lake,
                      env=cli_env(None))
    assert refused.returncode == 2 and "not allowed in a read-only session" in refused.stderr
    assert "--allow-writes" in refused.stderr and not target.exists()
    allowed = run_cli("query", f"COPY (SELECT * FROM trades) TO '{target}'", "--allow-writes", "--lake", lake,
                      env=cli_env(None))
    assert allowed.returncode == 0, allowed.stderr
    assert target.exists()
    noisy = run_cli("query", "SELECT sum(quantity) AS volume FROM trades", "--lake", lake, env=cli_env(None))
    value = next(line for line in noisy.stdout.splitlines() if any(c.isdigit() for c in line))
    assert "000000000" not in value and "999999999" not in value  # no binary float noise


def test_global_options_work_after_the_command(lake_with_table: LakeRef) -> None:
    after = run_cli("checkpoints", "list", "--json", "-v", "--log-format", "json",
                    "--lake", lake_with_table.url, env=cli_env(None))
    assert after.returncode == 0, after.stderr
    before = run_cli("--lake", lake_with_table.url, "-v", "checkpoints", "list", "--json", env=cli_env(None))
    assert before.returncode == 0, before.stderr
    assert orjson.loads(after.stdout) == orjson.loads(before.stdout)
