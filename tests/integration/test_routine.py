"""`schemahub run`: the routine (ingest -> transform -> repair -> certify -> check) as one command.

One pass ends with the table equal to ground truth, certificates for the closed days and a
green check, and one summary; `--every` repeats until a signal, which stops it cleanly
between passes (exit 0) or inside a step (exit 130, the later steps not started).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import orjson

from schemahub.infra.storage import LocalStorage
from schemahub.metrics.runs import load_all
from schemahub.quality.certificates import Certificates
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.server import Faults, ManualClock
from tests.conftest import SimFactory
from tests.helpers import assert_table_matches_truth, cli_args, cli_env, run_cli

SPEC = replace(simulator_class("coinbase").test_products[0], trades_per_s=0.05, history=12_000, gap_rate=0.0)
ARGS = ("--exchange", "coinbase", "--products", SPEC.symbol, "--since", "2026-11-01", "--freshness", "3650d")


def test_one_pass_ingests_certifies_and_checks(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = make_sim(products=[SPEC], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    done = run_cli("run", *ARGS, "--json", "--lake", str(lake), env=cli_env(sim))
    assert done.returncode == 0, done.stdout + done.stderr
    report = orjson.loads(done.stdout)
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("ingest", "ok"), ("transform", "ok"), ("repair", "ok"), ("certify", "ok"), ("check", "ok")]
    assert report["exit_code"] == 0
    assert_table_matches_truth(lake, sim, [SPEC.symbol])
    rows = Certificates(LocalStorage(lake)).rows()
    assert rows and {r["status"] for r in rows} == {"certified"}
    commands = [r.command for r in load_all(LocalStorage(lake))]
    assert {"ingest", "transform", "certify", "check"} <= set(commands)

    shown = run_cli("run", *ARGS, "--lake", str(lake), env=cli_env(sim))  # again: nothing new, all well
    assert shown.returncode == 0, shown.stdout
    lines = shown.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[step, "ok"] for step in
                                                   ("ingest", "transform", "repair", "certify", "check")]
    assert "0 day(s) certified" in lines[3]


def test_every_stops_cleanly_between_passes_and_inside_a_step(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = make_sim(products=[SPEC], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    proc = subprocess.Popen(cli_args("run", *ARGS, "--every", "1h", "--lake", str(lake)), env=cli_env(sim),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    assert proc.stdout is not None
    while "next pass in" not in seen:  # the first pass is over: the command waits for the next
        line = proc.stdout.readline()
        assert line, proc.communicate()
        seen += line
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - signalled < 5
    assert proc.returncode == 0, seen + out + err  # between passes: the last pass's status

    sim.set_faults(hang_rate=1.0, hang_s=60.0)  # every request now hangs: the next ingest is stuck
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(3600)
    proc = subprocess.Popen(cli_args("run", *ARGS, "--every", "1h", "--json", "--lake", str(lake)),
                            env=cli_env(sim, SCHEMAHUB_HTTP_READ_TIMEOUT="60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while sim.stats().get("hang", 0) == 0:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - signalled < 10, "a stop inside a step is seen within seconds"
    assert proc.returncode == 130, out + err
    steps = orjson.loads(out)["steps"]
    assert steps[0]["name"] == "ingest" and steps[0]["status"] == "interrupted"
    assert {s["status"] for s in steps[1:]} == {"skipped"}
    assert_table_matches_truth(lake, sim, [SPEC.symbol])  # what the first pass committed stays
