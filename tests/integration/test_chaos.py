"""Chaos, seeded and bounded: three exchanges with faults, one unreachable for a while, ingest
and transform SIGKILLed at random moments, a corrupt checkpoint and a corrupt raw file.
After the documented recovery the table equals the simulators' ground truth row by row and
`check` is green."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from schemahub.infra.storage import LocalStorage
from schemahub.ingest import products as product_list
from schemahub.simulator.server import Faults
from schemahub.sources.base import Product
from schemahub.sources.registry import list_exchanges
from tests.conftest import SimFactory
from tests.helpers import (
    PRODUCTS_FOR,
    TRADED,
    assert_table_matches_truth,
    cli_args,
    cli_env,
    raw_files,
    run_cli,
)

pytestmark = pytest.mark.slow
FAULTS = Faults(rate_limit=False, error_rate=0.04, truncate_rate=0.02, reset_rate=0.02, latency_s=0.01)


def _run_or_kill(args: list[str], env: dict[str, str], rng: random.Random) -> int | None:
    """Run a command; with probability 2/3 SIGKILL it after a random moment (None: killed)."""
    proc = subprocess.Popen(cli_args(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if rng.random() < 2 / 3:
        deadline = time.monotonic() + rng.uniform(0.3, 2.5)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return None
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    return proc.returncode


def test_chaos_then_the_documented_recovery_ends_exact_and_green(tmp_path: Path,
                                                                 make_sim: SimFactory) -> None:
    rng = random.Random(20261130)
    lake = tmp_path / "lake"
    sims = {name: make_sim(exchange=name, faults=FAULTS) for name in list_exchanges()}
    storage = LocalStorage(lake)
    for name in list_exchanges():
        specs = {p.symbol: p for p in PRODUCTS_FOR[name]}
        chosen = [Product(s, specs[s].native, "online", True) for s in TRADED[name]]  # type: ignore[arg-type]
        product_list.save_seed(storage, name, chosen, "http://simulator", None)
    env = cli_env(list(sims.values()), SCHEMAHUB_RETRY_MAX_ATTEMPTS="30", SCHEMAHUB_BREAKER_THRESHOLD="40",
                  SCHEMAHUB_HTTP_READ_TIMEOUT="1")
    ingest = ["ingest", "--exchange", "all", "--since", "2020-01-01", "--rate", "200", "--lake", str(lake)]
    transform = ["transform", "--lake", str(lake)]
    down = list_exchanges()[-1]
    corrupt_checkpoint = (list_exchanges()[0], TRADED[list_exchanges()[0]][1])
    corrupt_raw: str | None = None
    for step in range(5):
        sims[down].set_faults(error_rate=1.0 if step in (1, 2) else FAULTS.error_rate)  # unreachable a while
        _run_or_kill(ingest, env, rng)
        if step == 3:  # a torn checkpoint
            exchange, symbol = corrupt_checkpoint
            (lake / "state" / "checkpoints" / exchange / f"{symbol}.json").write_text('{"watermark": 7000')
        if step == 4 and corrupt_raw is None:  # a committed raw file cut in half, before transform reads it
            exchange = list_exchanges()[1]
            run_cli(*ingest, env=env)  # a complete run first: the newest file is committed
            key, _, _ = raw_files(lake, TRADED[exchange][0], exchange)[-1]
            corrupt_raw = key
            data = storage.read(key) or b""
            storage.write(key, data[: len(data) // 2])
        _run_or_kill(transform, env, rng)
        for sim in sims.values():
            sim.clock.advance(rng.uniform(60, 600))  # type: ignore[attr-defined]
    assert corrupt_raw is not None

    # -- the documented recovery --------------------------------------------------------------
    sims[down].set_faults(error_rate=0.0, truncate_rate=0.0, reset_rate=0.0)
    for sim in sims.values():
        sim.set_faults(error_rate=0.0, truncate_rate=0.0, reset_rate=0.0)
    quiet = cli_env(list(sims.values()))
    checked = run_cli("check", "--json", "--freshness", "3650d", "--lake", str(lake), env=quiet)
    assert checked.returncode == 1
    state = next(c for c in orjson.loads(checked.stdout) if c["name"] == "state")
    assert [d["kind"] for d in state["details"]] == ["checkpoint"]
    exchange, symbol = corrupt_checkpoint
    steps = [
        ["checkpoints", "rebuild", "--exchange", exchange, "--products", symbol, "--lake", str(lake)],
        ["ingest", "--exchange", "all", "--rate", "1000", "--lake", str(lake)],
        ["transform", "--lake", str(lake)],
        ["repair", "--lake", str(lake)],  # releases the quarantined file, fetches it again, transforms
    ]
    for args in steps:
        result = run_cli(*args, env=quiet)
        assert result.returncode in (0, 4), f"{args}: {result.stdout}{result.stderr}"  # 4: quarantined
    green = run_cli("check", "--freshness", "3650d", "--lake", str(lake), env=quiet)
    assert green.returncode == 0, green.stdout
    for name, sim in sims.items():
        assert_table_matches_truth(lake, sim, TRADED[name])
