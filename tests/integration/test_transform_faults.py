"""Transform under faults: SIGKILL mid-commit, corrupt raw files, and the `check` that sees them."""

from __future__ import annotations

import gzip
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from schemahub.simulator.server import Simulator
from tests.helpers import (
    assert_table_matches_truth,
    cli_args,
    cli_env,
    expected_rows,
    ingest,
    raw_files,
    run_cli,
    table_rows,
    transform,
)

PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]


def _parquet_files(lake: Path) -> int:
    table = lake / "table" / "trades"
    return sum(1 for _ in table.rglob("*.parquet")) if table.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["at-start", "first-data-file", "after-exit"])
def test_sigkill_during_transform_then_rerun_is_exact(tmp_path: Path, sim: Simulator, kill_when: str) -> None:
    ingest(tmp_path, sim, PRODUCTS)
    env = cli_env(None)
    proc = subprocess.Popen(cli_args("transform", "--lake", str(tmp_path)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_when == "first-data-file":
        while _parquet_files(tmp_path) == 0 and proc.poll() is None:
            time.sleep(0.001)
    elif kill_when == "after-exit":
        proc.wait()
    proc.kill()
    proc.wait()
    rerun = run_cli("transform", "--lake", str(tmp_path), env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert_table_matches_truth(tmp_path, sim, PRODUCTS)


def _rewrite(path: Path, edit: object) -> None:
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert callable(edit)
    lines = edit(lines)
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))


def _edit_record(index: int, change: object) -> object:
    def edit(lines: list[bytes]) -> list[bytes]:
        record = orjson.loads(lines[index])
        assert callable(change)
        change(record)
        return [*lines[:index], orjson.dumps(record), *lines[index + 1:]]
    return edit


def test_corrupt_raw_files_are_quarantined_and_the_rest_transformed(tmp_path: Path, sim: Simulator) -> None:
    ingest(tmp_path, sim, PRODUCTS)
    everything = expected_rows(tmp_path, sim, PRODUCTS)
    files = {key: (tmp_path / key) for key, _, _ in raw_files(tmp_path, "BTC-USD")}
    paths = sorted(files.values())
    originals = {p: p.read_bytes() for p in paths}
    truncated, bad_json, missing, wrong_type = paths[1], paths[3], paths[5], paths[7]
    truncated.write_bytes(originals[truncated][: len(originals[truncated]) // 2])
    _rewrite(bad_json, lambda lines: [*lines[:10], b'{"trade_id": 5, "side": "bu', *lines[11:]])
    _rewrite(missing, _edit_record(20, lambda r: r.pop("price")))
    _rewrite(wrong_type, _edit_record(30, lambda r: r.update(size={"amount": "1"})))

    result = run_cli("transform", "--json", "--lake", str(tmp_path), env=cli_env(None))
    assert result.returncode == 4, result.stderr  # done, but needs attention
    report = orjson.loads(result.stdout)
    reasons = {Path(q["key"]).name: q["reason"] for q in report["quarantined"]}
    assert set(reasons) == {truncated.name, bad_json.name, missing.name, wrong_type.name}
    # DuckDB reads a cut gzip stream up to the cut: the last line ends mid-record.
    assert reasons[truncated.name].startswith("Invalid Input Error: Malformed JSON")
    assert "unexpected end of data" in reasons[truncated.name]
    # the unterminated string on line 11 runs into the next line, where DuckDB notices it
    assert reasons[bad_json.name].startswith("Invalid Input Error: Malformed JSON")
    assert "in line 12: unexpected control character in string" in reasons[bad_json.name]
    assert reasons[missing.name] == "line 21: price missing is not a decimal number"
    assert reasons[wrong_type.name].startswith("line 31: quantity '{\"amount\":\"1\"}' is not a decimal")

    # Every good file is in the table; the quarantined ones are not.
    bad_ids = set()
    for path in (truncated, bad_json, missing, wrong_type):
        name = path.name.removesuffix(".jsonl.gz").split("-")
        bad_ids |= set(range(int(name[-2]), int(name[-1]) + 1))
    want = [r for r in everything if not (r["symbol"] == "BTC-USD" and int(r["trade_id"]) in bad_ids)]
    assert table_rows(tmp_path) == want

    checked = run_cli("check", "--json", "--freshness", "3650d", "--lake", str(tmp_path), env=cli_env(None))
    assert checked.returncode == 1
    by_name = {c["name"]: c for c in orjson.loads(checked.stdout)}
    assert by_name["quarantine"]["status"] == "fail"
    assert by_name["gaps"]["status"] == "ok"  # the missing ids are explained by the quarantine
    assert by_name["duplicates"]["status"] == "ok"

    for path, data in originals.items():  # repair: restore the files
        path.write_bytes(data)
    retried = transform(tmp_path, retry_quarantined=True)
    assert not retried.needs_attention
    assert_table_matches_truth(tmp_path, sim, PRODUCTS)
    healthy = run_cli("check", "--freshness", "3650d", "--lake", str(tmp_path), env=cli_env(None))
    assert healthy.returncode == 0, healthy.stdout
