"""One part failing never stops the rest: an unreachable exchange, a corrupt checkpoint, and
a stop request (SIGINT/SIGTERM) in the middle of a run of several exchanges."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from schemahub.infra.storage import LocalStorage
from schemahub.ingest import products as product_list
from schemahub.simulator.catalog import default_products
from schemahub.simulator.server import Faults
from schemahub.sources.base import Product
from schemahub.sources.registry import list_exchanges
from tests.conftest import SimFactory
from tests.helpers import (
    PRODUCTS_FOR,
    TRADED,
    assert_lake_matches_truth,
    checkpoint,
    cli_args,
    cli_env,
    held_leases,
    raw_files,
    run_cli,
)

pytestmark = pytest.mark.slow


def _seed(lake: Path, exchange: str) -> None:
    """The seed `update-seed` would write, for the contract suite's products."""
    specs = {p.symbol: p for p in PRODUCTS_FOR[exchange]}
    chosen = [Product(s, specs[s].native, "online", True) for s in TRADED[exchange]]  # type: ignore[arg-type]
    product_list.save_seed(LocalStorage(lake), exchange, chosen, "http://simulator", None)


def test_an_unreachable_exchange_fails_alone(tmp_path: Path, make_sim: SimFactory) -> None:
    lake = tmp_path / "lake"
    sims = [make_sim(exchange=name) for name in list_exchanges() if name != "coinbase"]
    for name in list_exchanges():
        _seed(lake, name)
    env = cli_env(sims, SCHEMAHUB_COINBASE_URL="http://127.0.0.1:9", SCHEMAHUB_METRICS="cloudwatch")
    result = run_cli("ingest", "--exchange", "all", "--since", "2020-01-01", "--rate", "1000", "--json",
                     "--lake", str(lake), env=env)
    assert result.returncode == 1, result.stderr  # only after every exchange ran to its end
    report = orjson.loads(result.stdout)
    by_exchange = {r["exchange"]: r for r in report["reports"]}
    assert sorted(by_exchange) == list_exchanges()
    failed = by_exchange["coinbase"]
    assert "cannot reach http://127.0.0.1:9" in failed["error"] and "gave up after" in failed["error"]
    assert sorted((p["symbol"], p["status"]) for p in failed["products"]) == [
        (s, "failed") for s in sorted(TRADED["coinbase"])]
    assert all("cannot reach" in p["error"] for p in failed["products"])
    for sim in sims:
        assert by_exchange[sim.exchange]["ok"], by_exchange[sim.exchange]
        for symbol in TRADED[sim.exchange]:
            assert_lake_matches_truth(lake, sim, symbol)  # checkpoints moved, data exact
    [record] = [orjson.loads(p.read_bytes()) for p in (lake / "runs").rglob("*.json")]
    assert record["status"] == "failed"
    statuses = {(p["exchange"], p["symbol"]): (p["status"], p["error"]) for p in record["products"]}
    assert len(statuses) == sum(len(TRADED[name]) for name in list_exchanges())
    assert all(status == "failed" and "cannot reach" in (error or "")
               for (exchange, _), (status, error) in statuses.items() if exchange == "coinbase")
    assert record["details"]["exchange_errors"]["coinbase"] == failed["error"]
    metrics = [orjson.loads(line) for line in result.stderr.splitlines() if '"_aws"' in line]
    assert {m["Exchange"] for m in metrics if "Exchange" in m} == set(list_exchanges())
    failed_runs = [m for m in metrics if m.get("Command") == "ingest"]
    assert failed_runs and failed_runs[0]["RunFailed"] == 1.0


def test_a_corrupt_checkpoint_fails_only_its_product(tmp_path: Path, make_sim: SimFactory) -> None:
    lake = tmp_path / "lake"
    sims = [make_sim(exchange=name) for name in list_exchanges()]
    env = cli_env(sims)
    base = ["--since", "2020-01-01", "--rate", "1000", "--lake", str(lake)]
    for name in list_exchanges():
        _seed(lake, name)
    first = run_cli("ingest", "--exchange", "all", *base, env=env)
    assert first.returncode == 0, first.stderr
    victim = TRADED["binance"][0]
    path = lake / "state" / "checkpoints" / "binance" / f"{victim}.json"
    path.write_text('{"watermark": 7000')  # a torn write by some other tool
    before = {name: {s: checkpoint(lake, s, name).last_trade_id for s in TRADED[name] if (name, s) !=
                     ("binance", victim)} for name in list_exchanges()}
    for sim in sims:  # ten minutes of new trades (a day: a new archive file for Bybit)
        sim.clock.advance(max(600.0, sim.api.incremental_step_s))  # type: ignore[attr-defined]

    again = run_cli("ingest", "--exchange", "all", *base, "--json", env=env)
    assert again.returncode == 1
    reports = {r["exchange"]: r for r in orjson.loads(again.stdout)["reports"]}
    products = {(r["exchange"], p["symbol"]): p for r in reports.values() for p in r["products"]}
    bad = products[("binance", victim)]
    assert bad["status"] == "failed" and str(path) in bad["error"] and "is corrupt" in bad["error"]
    assert f"schemahub checkpoints rebuild --exchange binance --products {victim}" in bad["error"]
    for name, watermarks in before.items():
        for symbol, watermark in watermarks.items():
            assert products[(name, symbol)]["status"] == "ok"
            assert checkpoint(lake, symbol, name).last_trade_id > watermark  # the others moved on

    listed = run_cli("checkpoints", "list", "--lake", str(lake), env=cli_env(None))
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if victim in line and "binance" in line)
    assert "corrupt" in row and str(path) not in row.split("corrupt")[0]
    assert str(path) in listed.stderr
    run_cli("transform", "--lake", str(lake), env=cli_env(None))
    checked = run_cli("check", "--json", "--freshness", "3650d", "--lake", str(lake), env=cli_env(None))
    assert checked.returncode == 1
    state = next(c for c in orjson.loads(checked.stdout) if c["name"] == "state")
    assert state["status"] == "fail"
    assert [(d["path"], d["kind"]) for d in state["details"]] == [(str(path), "checkpoint")]
    assert "checkpoints rebuild" in state["details"][0]["recovery"]

    # the documented recovery ends with check green
    rebuilt = run_cli("checkpoints", "rebuild", "--exchange", "binance", "--products", victim,
                      "--lake", str(lake), env=cli_env(None))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert run_cli("ingest", "--exchange", "all", *base, env=env).returncode == 0
    assert run_cli("transform", "--lake", str(lake), env=cli_env(None)).returncode == 0
    green = run_cli("check", "--freshness", "3650d", "--lake", str(lake), env=cli_env(None))
    assert green.returncode == 0, green.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM])  # SIGINT inside a step: tests/integration/test_routine.py
def test_a_signal_stops_every_exchange_within_seconds(tmp_path: Path, make_sim: SimFactory,
                                                      sig: signal.Signals) -> None:
    lake = tmp_path / "lake"
    # a quarter of the default (larger) products: a run at 20 pages/s takes long enough to be
    # interrupted (every venue is made to hang once it wrote something)
    sims = [make_sim(exchange=name, faults=Faults(rate_limit=False, latency_s=0.05),
                     products=[replace(p, history=p.history // 4) for p in default_products(name)])
            for name in list_exchanges()]
    for name in list_exchanges():
        _seed(lake, name)
    env = cli_env(sims, SCHEMAHUB_HTTP_READ_TIMEOUT="60", SCHEMAHUB_RETRY_MAX_ATTEMPTS="10")
    proc = subprocess.Popen(cli_args("ingest", "--exchange", "all", "--since", "2020-01-01", "--rate", "20",
                                     "--lake", str(lake)), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # As soon as an exchange committed something, make every further request to it hang
        # for a minute: a run that waited for requests in flight would take that long.
        # (An exchange that finished its work by then - a fast venue - has nothing to hang:
        # after the last one is set, two seconds of grace.)
        deadline = time.monotonic() + 90
        waiting = list(sims)
        all_set: float | None = None
        while waiting or not all(sim.stats().get("hang", 0) > 0 for sim in sims):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no progress: {[(s.exchange, s.stats()) for s in sims]}"
            for sim in [s for s in waiting if raw_files(lake, TRADED[s.exchange][0], s.exchange)]:
                sim.set_faults(hang_rate=1.0, hang_s=60.0)
                waiting.remove(sim)
            if not waiting:
                all_set = all_set or time.monotonic()
                if time.monotonic() - all_set > 2.0:
                    break
            time.sleep(0.05)
        signalled = time.monotonic()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert stopped_in < 5, f"took {stopped_in:.1f}s to stop"
    assert "Traceback" not in err
    assert "interrupted" in out  # the summary was printed
    finished = [orjson.loads(line) for line in err.splitlines()
                if line.startswith("{") and '"product_finished"' in line]
    statuses = {(e["exchange"], e["symbol"]): e["status"] for e in finished}
    assert "interrupted" in statuses.values()
    assert all(status in ("interrupted", "ok", "up-to-date") for status in statuses.values())
    assert held_leases(lake) == set()  # every lease released
    [record] = [orjson.loads(p.read_bytes()) for p in (lake / "runs").rglob("*.json")]
    assert record["status"] == "interrupted"
    for sim in sims:
        sim.set_faults(hang_rate=0.0)
        for symbol in TRADED[sim.exchange]:
            if (lake / "state" / "checkpoints" / sim.exchange / f"{symbol}.json").exists():
                assert_lake_matches_truth(lake, sim, symbol, committed_only=True)  # committed: exact
    resumed = run_cli("ingest", "--exchange", "all", "--since", "2020-01-01", "--rate", "1000",
                      "--lake", str(lake), env=cli_env(sims))
    assert resumed.returncode == 0, resumed.stderr
    for sim in sims:
        for symbol in TRADED[sim.exchange]:
            assert_lake_matches_truth(lake, sim, symbol)
