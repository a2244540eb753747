"""The examples run: the research notebook against a lake of three simulated venues (what it
prints is checked against the table), the Dagster assets where Dagster is installed."""

from __future__ import annotations

import importlib.util
import json
import py_compile
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.server import Faults
from tests.conftest import SimFactory
from tests.helpers import EPOCH_2020_US, cli_env, ingest, sim_env, table_rows, transform

EXAMPLES = Path(__file__).parents[2] / "examples"
SYMBOL = "BTC-USDT"
VENUES = ("binance", "coinbase", "kraken")


def _lake(tmp_path: Path, make_sim: SimFactory) -> tuple[Path, dict[str, str]]:
    lake = tmp_path / "lake"
    env: dict[str, str] = {}
    for name in VENUES:
        spec = next(p for p in simulator_class(name).test_products if p.symbol == SYMBOL)
        sim = make_sim(exchange=name, products=[replace(spec, trades_per_s=0.05, history=3_000)],
                       faults=Faults(rate_limit=False))
        ingest(lake, sim, [SYMBOL], since_us=EPOCH_2020_US)
        env.update(sim_env(sim))
    transform(lake)
    return lake, env


def test_the_research_notebook_runs_and_says_what_the_table_holds(tmp_path: Path,
                                                                  make_sim: SimFactory) -> None:
    lake, _ = _lake(tmp_path, make_sim)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(EXAMPLES / "research_notebook.py"), str(lake), str(out)],
                          env=cli_env(None), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rows = table_rows(lake)
    last_days = {name: max(r["trade_date"] for r in rows if r["exchange"] == name) for name in VENUES}
    day = min(last_days.values())
    assert summary["venues"] == list(VENUES) and summary["day"] == day.isoformat()
    assert summary["day_trades"] == sum(1 for r in rows if r["trade_date"] == day)
    minutes = {int(r["trade_ts"].timestamp()) // 60 for r in rows}
    assert summary["minute_bars"] == len(minutes)
    assert set(summary["mean_abs_spread_bps"]) == set(VENUES)
    chart = Path(summary["chart"])
    assert chart.parent == out and "plotly" in chart.read_text()[:5000].lower()
    per_venue = Counter(r["exchange"] for r in rows)
    assert all(per_venue[name] == 3_000 for name in VENUES)


def test_the_dagster_assets_materialize_the_routine(tmp_path: Path, make_sim: SimFactory,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    py_compile.compile(str(EXAMPLES / "dagster_assets.py"), doraise=True)  # at least it parses
    if importlib.util.find_spec("dagster") is None:
        pytest.skip("Dagster is an optional dependency (pip install 'schemahub[dagster]'); the example "
                    "was only compiled")
    import dagster  # pragma: no cover - with the optional dependency only

    lake, env = _lake(tmp_path, make_sim)
    for key, value in {**env, "SCHEMAHUB_LAKE": str(lake), "DAGSTER_EXCHANGES": ",".join(VENUES),
                       "DAGSTER_PRODUCTS": SYMBOL}.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("dagster_assets", EXAMPLES / "dagster_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assets = [module.raw_trades, module.trades_table, module.repaired, module.certificates]
    result = dagster.materialize(assets)
    assert result.success
