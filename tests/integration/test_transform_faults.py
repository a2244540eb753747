"""Transform under faults: SIGKILL mid-commit, corrupt raw files, and the `check` that sees them."""

from __future__ import annotations

import gzip
import subprocess
import time

import orjson
import pytest

from schemahub.infra.storage import Storage
from schemahub.simulator.server import Simulator
from tests.conftest import SimFactory
from tests.helpers import (
    TRADED,
    assert_table_matches_truth,
    cli_args,
    cli_env,
    expected_rows,
    ingest,
    lake_keys,
    raw_files,
    run_cli,
    table_rows,
    transform,
)
from tests.lakes import LakeRef

PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]


def _parquet_files(lake: LakeRef) -> int:
    return sum(1 for key in lake_keys(lake, "table/trades/") if key.endswith(".parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["at-start", "first-data-file", "after-exit"])
def test_sigkill_during_transform_then_rerun_is_exact(lake: LakeRef, sim: Simulator, kill_when: str) -> None:
    ingest(lake, sim, PRODUCTS)
    env = cli_env(None, lake)
    proc = subprocess.Popen(cli_args("transform", "--lake", lake.url), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_when == "first-data-file":
        while _parquet_files(lake) == 0 and proc.poll() is None:
            time.sleep(0.001)
    elif kill_when == "after-exit":
        proc.wait()
    proc.kill()
    proc.wait()
    rerun = run_cli("transform", "--lake", lake.url, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert_table_matches_truth(lake, sim, PRODUCTS)


def _rewrite(storage: Storage, key: str, edit: object) -> None:
    lines = gzip.decompress(storage.read(key) or b"").splitlines()
    assert callable(edit)
    lines = edit(lines)
    storage.write(key, gzip.compress(b"\n".join(lines) + b"\n"))


def _edit_record(index: int, change: object) -> object:
    def edit(lines: list[bytes]) -> list[bytes]:
        record = orjson.loads(lines[index])
        assert callable(change)
        change(record)
        return [*lines[:index], orjson.dumps(record), *lines[index + 1:]]
    return edit


def test_corrupt_raw_files_are_quarantined_and_the_rest_transformed(lake: LakeRef, sim: Simulator) -> None:
    ingest(lake, sim, PRODUCTS)
    everything = expected_rows(lake, sim, PRODUCTS)
    storage = lake.storage()
    keys = sorted(key for key, _, _ in raw_files(lake, "BTC-USD"))
    originals = {key: storage.read(key) or b"" for key in keys}
    truncated, bad_json, missing, wrong_type = keys[1], keys[3], keys[5], keys[7]
    storage.write(truncated, originals[truncated][: len(originals[truncated]) // 2])
    _rewrite(storage, bad_json, lambda lines: [*lines[:10], b'{"trade_id": 5, "side": "bu', *lines[11:]])
    _rewrite(storage, missing, _edit_record(20, lambda r: r.pop("price")))
    _rewrite(storage, wrong_type, _edit_record(30, lambda r: r.update(size={"amount": "1"})))

    result = run_cli("transform", "--json", "--lake", lake.url, env=cli_env(None, lake))
    assert result.returncode == 4, result.stderr  # done, but needs attention
    report = orjson.loads(result.stdout)
    reasons = {q["key"]: q["reason"] for q in report["quarantined"]}
    assert set(reasons) == {truncated, bad_json, missing, wrong_type}
    # DuckDB reads a cut gzip stream up to the cut: the last line ends mid-record.
    assert reasons[truncated].startswith("Invalid Input Error: Malformed JSON")
    assert "unexpected end of data" in reasons[truncated]
    # the unterminated string on line 11 runs into the next line, where DuckDB notices it
    assert reasons[bad_json].startswith("Invalid Input Error: Malformed JSON")
    assert "in line 12: unexpected control character in string" in reasons[bad_json]
    assert reasons[missing] == "line 21: price missing is not a decimal number"
    assert reasons[wrong_type].startswith("line 31: quantity '{\"amount\":\"1\"}' is not a decimal")

    # Every good file is in the table; the quarantined ones are not.
    bad_ids = set()
    for key in (truncated, bad_json, missing, wrong_type):
        name = key.removesuffix(".jsonl.gz").split("-")
        bad_ids |= set(range(int(name[-2]), int(name[-1]) + 1))
    want = [r for r in everything if not (r["symbol"] == "BTC-USD" and int(r["trade_id"]) in bad_ids)]
    assert table_rows(lake) == want

    checked = run_cli("check", "--json", "--freshness", "3650d", "--lake", lake.url, env=cli_env(None, lake))
    assert checked.returncode == 1
    by_name = {c["name"]: c for c in orjson.loads(checked.stdout)}
    assert by_name["quarantine"]["status"] == "fail"
    # the trades of quarantined files are missing: the gaps check says so, and why
    gaps = by_name["gaps"]
    assert gaps["status"] == "fail" and "in quarantined files" in gaps["summary"]
    btc = next(d for d in gaps["details"] if d["symbol"] == "BTC-USD")
    assert btc["quarantined_ids"] == btc["missing_ids"] > 0 and btc["unexplained_ids"] == 0
    assert by_name["duplicates"]["status"] == "ok"

    for key, data in originals.items():  # repair: restore the files
        storage.write(key, data)
    retried = transform(lake, retry_quarantined=True)
    assert not retried.needs_attention
    assert_table_matches_truth(lake, sim, PRODUCTS)
    healthy = run_cli("check", "--freshness", "3650d", "--lake", lake.url, env=cli_env(None, lake))
    assert healthy.returncode == 0, healthy.stdout


@pytest.mark.slow
@pytest.mark.parametrize("exchange", ["coinbase", "kraken"])
def test_released_quarantined_files_are_fetched_again_and_check_ends_green(
        lake: LakeRef, make_sim: SimFactory, exchange: str) -> None:
    """The way back from quarantine: list, release, repair, transform - and `check` is green."""
    if (lake.kind == "s3") != (exchange == "coinbase"):
        pytest.skip("one lake per exchange: coinbase on S3, kraken locally (test_repair covers the rest)")
    sim = make_sim(exchange=exchange)
    products = TRADED[exchange]
    ingest(lake, sim, products)
    storage = lake.storage()
    symbol = products[0]
    keys = sorted(key for key, _, _ in raw_files(lake, symbol, exchange))
    truncated, malformed = keys[1], keys[2]
    storage.write(truncated, (storage.read(truncated) or b"")[:300])
    _rewrite(storage, malformed, lambda lines: [*lines[:5], b'{"not json', *lines[6:]])
    env = cli_env(None, lake)
    assert run_cli("transform", "--lake", lake.url, env=env).returncode == 4

    listed = run_cli("quarantine", "list", "--json", "--lake", lake.url, env=env)
    assert sorted(q["key"] for q in orjson.loads(listed.stdout)) == [truncated, malformed]
    released = run_cli("quarantine", "release", "--all", "--lake", lake.url, env=env)
    assert released.returncode == 0, released.stderr
    assert released.stdout.count("will be fetched again") == 2
    assert storage.read(truncated) is None and storage.read(malformed) is None  # set aside, not in raw
    waiting = run_cli("check", "--json", "--freshness", "3650d", "--lake", lake.url, env=env)
    assert waiting.returncode == 1
    gaps = next(c for c in orjson.loads(waiting.stdout) if c["name"] == "gaps")
    assert "awaiting repair" in gaps["summary"]

    plan = run_cli("repair", "--dry-run", "--exchange", exchange, "--json", "--lake", lake.url,
                   env=cli_env(sim, lake))
    planned = orjson.loads(plan.stdout)["items"]
    assert {(i["symbol"], i["kind"]) for i in planned} == {(symbol, "requested")}
    repaired = run_cli("repair", "--lake", lake.url, env=cli_env(sim, lake))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert run_cli("transform", "--lake", lake.url, env=env).returncode == 0
    assert_table_matches_truth(lake, sim, products)
    healthy = run_cli("check", "--freshness", "3650d", "--lake", lake.url, env=env)
    assert healthy.returncode == 0, healthy.stdout
    again = run_cli("repair", "--lake", lake.url, env=cli_env(sim, lake))  # idempotent: nothing left
    assert again.returncode == 0 and "nothing to repair" in again.stdout
