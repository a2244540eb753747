"""The lake's filesystem misbehaving: one line naming the path, the documented exit code, no
traceback, nothing created by read-only commands, and a full disk that leaves the lake
consistent."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemahub.simulator.server import Simulator
from tests.conftest import SimFactory
from tests.helpers import assert_lake_matches_truth, cli_args, cli_env, run_cli, trade_id

pytestmark = pytest.mark.slow

READ_ONLY = [
    ("check",), ("transform", "--dry-run"), ("query", "SELECT 1"), ("dashboard", "--output", "{tmp}/d.html"),
    ("locks",), ("checkpoints", "list"), ("quarantine", "list"),
]


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a[:2]))
def test_read_only_commands_on_a_mistyped_lake_create_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    lake = tmp_path / "lakee"
    result = run_cli(*[a.format(tmp=tmp_path) for a in args], "--lake", str(lake), env=cli_env(None))
    assert result.returncode == 2
    assert f"no lake at {lake}" in _one_line_error(result)
    assert not lake.exists()


def test_a_lake_that_is_a_file(tmp_path: Path, sim: Simulator) -> None:
    lake = tmp_path / "notes.txt"
    lake.write_text("not a lake")
    for args in (("ingest", "--products", "BTC-USD"), ("check",), ("transform",)):
        result = run_cli(*args, "--lake", str(lake), env=cli_env(sim))
        assert result.returncode == 2, result.stderr
        line = _one_line_error(result)
        assert f"the lake {lake} is a file, not a folder" in line
    assert lake.read_text() == "not a lake"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's own temp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="schemahub-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_unwritable_lake_is_a_clear_configuration_error(shared_dir: Path, sim: Simulator) -> None:
    lake = shared_dir / "lake"
    lake.mkdir()
    lake.chmod(0o555)  # readable, not writable
    command = cli_args("ingest", "--products", "BTC-USD", "--lake", str(lake))
    if os.geteuid() == 0:  # root writes anywhere: run as nobody, as a real deployment would
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, env=cli_env(sim), capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 2, result.stderr
    line = _one_line_error(result)
    assert str(lake) in line and "not writable" in line
    assert list(lake.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs: a lake on it runs out of space mid-run."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()}): needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_leaves_the_lake_consistent_and_says_so(tiny_disk: Path, make_sim: SimFactory,
                                                            tmp_path: Path) -> None:
    from schemahub.simulator.market import ProductSpec

    spec = ProductSpec("BTC-USD", 64_000.0, mean_size=0.02, trades_per_s=6.0, history=120_000,
                       first_id=700_000_001, gap_rate=0.0)
    sim = make_sim(products=[spec])
    lake = tiny_disk / "lake"
    filler = tiny_disk / "filler"
    filler.write_bytes(bytes(2_000_000))  # leave about a megabyte: room for some raw files only
    result = run_cli("ingest", "--products", "BTC-USD", "--since", "2020-01-01", "--rate", "1000", "--lake",
                     str(lake), env=cli_env(sim))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "no space left on the device" in result.stderr
    assert "nothing of this write was committed" in result.stderr
    assert not list((lake / ".tmp").glob("*.tmp"))  # no half-written temp file stays behind
    filler.unlink()  # free some space: the documented recovery is to run it again
    again = run_cli("ingest", "--products", "BTC-USD", "--rate", "1000", "--lake", str(lake),
                    env=cli_env(sim))
    assert again.returncode == 0, again.stderr
    checkpoint = assert_lake_matches_truth(lake, sim, "BTC-USD")
    assert checkpoint.last_trade_id == trade_id(sim.ground_truth("BTC-USD")[-1])  # all of it

