"""Table maintenance racing everything else: the rows never change, and no reader fails.

Rounds of real processes run at once against one lake (local and S3): `compact`,
`compact --zorder`, `compact --vacuum`, `transform` (with new raw files to append),
`transform --rebuild` and long queries. After every round the table equals the
simulator's ground truth row by row. A rewrite that finds another one running stops
with one line (exit 3); no command prints a traceback.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from schemahub.simulator.server import Faults, ManualClock, Simulator
from tests.helpers import (
    SIM_START,
    TEST_PRODUCTS,
    assert_table_matches_truth,
    cli_args,
    cli_env,
    delta_table,
    ingest,
    run_cli,
    table_rows,
    transform,
)
from tests.lakes import LakeRef

pytestmark = pytest.mark.slow
PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]
ROUNDS = 2
_COUNT = "SELECT count(*) AS n, count(DISTINCT exchange || symbol || trade_id) AS k FROM trades"
# A query that takes a while: every row, sorted, while the others rewrite the files under it.
_LONG = ("SELECT symbol, count(*) AS n, sum(price * quantity) AS notional FROM "
         "(SELECT * FROM trades ORDER BY trade_ts, trade_id) GROUP BY ALL ORDER BY ALL")


def _start(lake: LakeRef, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli_args(*args, "--lake", lake.url), env=cli_env(None, lake),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _small_files(lake: LakeRef, sim: Simulator, steps: int) -> None:
    """Several ingest + transform steps: many small table files to compact."""
    assert isinstance(sim.clock, ManualClock)
    for _ in range(steps):
        sim.clock.advance(300)
        assert ingest(lake, sim, PRODUCTS).ok
        transform(lake)


def test_concurrent_maintenance_never_changes_the_rows(lake: LakeRef) -> None:
    sim = Simulator("coinbase", TEST_PRODUCTS, seed=11, clock=ManualClock(SIM_START),
                    faults=Faults(rate_limit=False)).start()
    try:
        assert ingest(lake, sim, PRODUCTS).ok
        transform(lake)
        _small_files(lake, sim, 3)
        for round_number in range(ROUNDS):
            # New raw files, so that the racing `transform` has something to append.
            assert isinstance(sim.clock, ManualClock)
            sim.clock.advance(300)
            assert ingest(lake, sim, PRODUCTS).ok
            commands = {
                "compact": ("compact", "--target-size", "64MB"),
                "zorder": ("compact", "--zorder"),
                "vacuum": ("compact", "--vacuum", "--retain-hours", "1"),
                "transform": ("transform",),
                "rebuild": ("transform", "--rebuild"),
                "query-long": ("query", _LONG, "--format", "json"),
                "query-count": ("query", _COUNT, "--format", "json"),
            }
            running = {name: _start(lake, *args) for name, args in commands.items()}
            outputs = {name: proc.communicate(timeout=300) for name, proc in running.items()}
            results = {name: (running[name].returncode, *outputs[name]) for name in running}
            for name, (code, _, err) in results.items():
                assert "Traceback" not in err, f"round {round_number}: {name} printed a traceback:\n{err}"
                if name.startswith("query"):
                    assert code == 0, f"round {round_number}: a reader failed: {err}"
                elif name in ("compact", "zorder", "vacuum", "rebuild") and code == 3:
                    # lost the maintenance lease to another rewrite: one line, and nothing done
                    assert len(err.strip().splitlines()) == 1 and "another rewrite" in err, err
                else:
                    assert code == 0, f"round {round_number}: {name} exited {code}: {err}"
            counted = orjson.loads(results["query-count"][1].splitlines()[0])
            assert counted["n"] == counted["k"], f"round {round_number}: a reader saw duplicated rows"
            rows = table_rows(lake)
            keys = [(r["exchange"], r["symbol"], r["trade_id"]) for r in rows]
            assert len(keys) == len(set(keys)), f"round {round_number}: the table holds duplicates"
            transform(lake)  # catch up on whatever the racing transforms left for later
            assert_table_matches_truth(lake, sim, PRODUCTS)
    finally:
        sim.stop()


def _age_tombstones(lake: Path, version: int, hours: float) -> None:
    """Backdate the remove actions of one commit (as if it had happened ``hours`` ago)."""
    commit = lake / "table" / "trades" / "_delta_log" / f"{version:020d}.json"
    past = int((datetime.now(UTC) - timedelta(hours=hours)).timestamp() * 1000)
    lines = []
    for line in commit.read_text().splitlines():
        action = orjson.loads(line)
        if "remove" in action:
            action["remove"]["deletionTimestamp"] = past
        lines.append(orjson.dumps(action).decode())
    commit.write_text("\n".join(lines) + "\n")


def test_vacuum_keeps_what_readers_of_recent_versions_need(tmp_path: Path) -> None:
    """Vacuum deletes only files no version of the retention window reads: a reader pinned
    to a version the window still covers keeps working; one older than the window gets a
    clear error, never wrong rows; the current version is intact either way."""
    from schemahub import pipeline
    from tests.helpers import lake_settings

    lake = LakeRef(str(tmp_path / "lake"))
    sim = Simulator("coinbase", TEST_PRODUCTS, seed=5, clock=ManualClock(SIM_START),
                    faults=Faults(rate_limit=False)).start()
    try:
        assert ingest(lake, sim, PRODUCTS).ok
        transform(lake)
        _small_files(lake, sim, 2)
        rows = table_rows(lake)
        old = pipeline.query_engine(lake_settings(lake))  # a reader pinned to this version
        pinned = old.version
        assert pinned is not None
        compacted = run_cli("compact", "--zorder", "--lake", lake.url, env=cli_env(None, lake))
        assert compacted.returncode == 0, compacted.stderr
        rewrite = delta_table(lake).version()
        assert rewrite > pinned

        vacuum_args = ["compact", "--vacuum", "--retain-hours", "1", "--lake", lake.url]
        vacuum = run_cli(*vacuum_args, env=cli_env(None, lake))
        assert vacuum.returncode == 0 and "vacuum deleted 0 files" in vacuum.stdout, vacuum.stdout
        assert old.sql("SELECT count(*) AS n FROM trades").to_pylist() == [{"n": len(rows)}]

        _age_tombstones(Path(lake.url), rewrite, hours=2)  # the rewrite is now 2 hours old
        vacuum = run_cli(*vacuum_args, env=cli_env(None, lake))
        assert vacuum.returncode == 0, vacuum.stderr
        assert "vacuum deleted 0 files" not in vacuum.stdout, vacuum.stdout
        assert table_rows(lake) == rows  # the current version is whole
        from schemahub.errors import QueryError

        with pytest.raises(QueryError, match=f"table version {pinned} lists a data file that is gone"):
            old.sql("SELECT sum(price) FROM trades")
        old.close()
    finally:
        sim.stop()
