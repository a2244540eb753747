"""The cloud backends end to end: scale-out over S3 + DynamoDB, racing transforms, init-cloud and
Glue registration, and bad configuration - all against a real moto server over HTTP."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import defaultdict
from dataclasses import replace

import orjson
import pytest

from schemahub.simulator.server import Faults
from tests.conftest import SimFactory
from tests.helpers import (
    TEST_PRODUCTS,
    assert_lake_matches_truth,
    assert_table_matches_truth,
    checkpoint,
    cli_args,
    cli_env,
    held_leases,
    ingest,
    lake_keys,
    raw_files,
    run_cli,
    table_rows,
    trade_id,
)
from tests.lakes import TEST_KEY_ID, TEST_SECRET, LakeRef, MotoServer, aws_env, new_s3_lake, s3_client

pytestmark = pytest.mark.slow

TEN = [replace(TEST_PRODUCTS[0], symbol=f"C{n}-USD", first_id=1_000_000 * (n + 1) + 1,
               history=8_000 + 250 * n, gap_rate=0.002) for n in range(10)]


def _mid_product(lake: LakeRef, pid: int) -> bool:
    """Does worker ``pid`` hold a product with some raw files written and three chunks to go?"""
    held = {name.rsplit("/", 1)[1] for name, owner in held_leases(lake, owners=True) if f":{pid}:" in owner}
    for spec in TEN:
        if spec.symbol in held:
            written = len(lake_keys(lake, f"raw/exchange=coinbase/symbol={spec.symbol}/"))
            if 1 <= written <= spec.history // 1000 - 3:
                return True
    return False


def test_three_workers_split_ten_products_and_survive_a_kill(s3_lake: LakeRef, make_sim: SimFactory) -> None:
    sim = make_sim(products=TEN, faults=Faults(rate_limit=False, latency_s=0.2))
    symbols = [p.symbol for p in TEN]
    # One raw file per page (no gathering): the kill must land between files of a product.
    env = cli_env(sim, s3_lake, SCHEMAHUB_LOCK_TTL="4", SCHEMAHUB_RAW_FILE_TRADES="0")
    args = cli_args("ingest", "--products", ",".join(symbols), "--since", "2020-01-01", "--rate", "1000",
                    "--workers", "2", "--chunk-concurrency", "2", "--lock-wait", "60", "--json",
                    "--lake", s3_lake.url)
    workers = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    victim = workers[0]
    # Kill worker 0 (SIGKILL: no cleanup, no release) in the middle of a product.
    while victim.poll() is None and not _mid_product(s3_lake, victim.pid):
        time.sleep(0.01)
    victim.kill()
    victim.communicate()
    outputs = [w.communicate(timeout=240) for w in workers[1:]]
    for worker, (_, stderr) in zip(workers[1:], outputs, strict=True):
        assert worker.returncode == 0, stderr

    for symbol in symbols:
        cp = assert_lake_matches_truth(s3_lake, sim, symbol)  # nothing lost, nothing twice
        assert cp.last_trade_id == trade_id(sim.ground_truth(symbol)[-1])  # and complete
        # Fencing tokens prove one writer at a time: each token belongs to one owner, and
        # in the order files were written the tokens never go back.
        files = sorted(raw_files(s3_lake, symbol), key=lambda f: f[1].fetched_at)
        owners: dict[int, set[str]] = defaultdict(set)
        for _, header, _ in files:
            owners[header.writer.lease_token].add(header.writer.owner)
        assert all(len(o) == 1 for o in owners.values()), owners
        tokens = [h.writer.lease_token for _, h, _ in files]
        assert tokens == sorted(tokens), f"{symbol}: writers interleaved: {tokens}"
        assert cp.lease_token >= max(tokens)
    written_by = {h.writer.owner.split(":")[1] for s in symbols for _, h, _ in raw_files(s3_lake, s)}
    assert str(victim.pid) in written_by
    assert {str(w.pid) for w in workers[1:]} <= written_by  # the survivors both did work
    owners_of = {s: {h.writer.owner for _, h, _ in raw_files(s3_lake, s)} for s in symbols}
    taken_over = [s for s, owners_s in owners_of.items()
                  if len(owners_s) > 1 and any(f":{victim.pid}:" in o for o in owners_s)]
    assert taken_over, "no product of the killed worker was taken over mid-way"

    transformed = run_cli("transform", "--lake", s3_lake.url, env=env)
    assert transformed.returncode == 0, transformed.stderr
    assert_table_matches_truth(s3_lake, sim, symbols)


def test_two_hosts_transforming_one_s3_table_lose_and_duplicate_nothing(s3_lake: LakeRef,
                                                                        make_sim: SimFactory) -> None:
    sim = make_sim()
    products = ["BTC-USD", "SOL-USD", "BTC-USDT"]
    for _ in range(3):  # several rounds, so the racers meet both an empty and a growing table
        assert ingest(s3_lake, sim, products).ok
        env = cli_env(None, s3_lake)
        before = len(table_rows(s3_lake)) if lake_keys(s3_lake, "table/") else 0
        command = cli_args("transform", "--json", "--lake", s3_lake.url)
        racers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True) for _ in range(2)]
        results = [r.communicate(timeout=240) for r in racers]
        for racer, (_, stderr) in zip(racers, results, strict=True):
            assert racer.returncode == 0, stderr
        written = [orjson.loads(out)["rows_written"] for out, _ in results]
        assert_table_matches_truth(s3_lake, sim, products)
        # what both report having written is exactly what the table gained: the loser of the
        # commit race re-planned against the winner's commit and wrote nothing twice
        assert sum(written) == len(table_rows(s3_lake)) - before > 0
        sim.clock.advance(900)  # type: ignore[attr-defined]
    rows = table_rows(s3_lake)
    assert len({(r["exchange"], r["symbol"], r["trade_id"]) for r in rows}) == len(rows)


def test_init_cloud_creates_the_lock_table_and_registers_glue_tables(moto_url: str) -> None:
    import boto3

    suffix = uuid.uuid4().hex[:8]
    bucket, table, database = f"lake-{suffix}", f"locks-{suffix}", "schemahub_test"
    s3_client(moto_url).create_bucket(Bucket=bucket)
    lake = LakeRef(f"s3://{bucket}/prod", {**aws_env(moto_url), "SCHEMAHUB_LOCKS": f"dynamodb://{table}",
                                            "SCHEMAHUB_GLUE_DATABASE": database})
    first = run_cli("init-cloud", "--lake", lake.url, env=cli_env(None, lake))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"lock table {table}: created", f"glue database {database}: created",
        f"glue table {database}.trades: created", f"glue table {database}.raw_trades: created"]
    again = run_cli("init-cloud", "--lake", lake.url, env=cli_env(None, lake))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"lock table {table}: exists", f"glue database {database}: exists",
        f"glue table {database}.trades: updated", f"glue table {database}.raw_trades: updated"]

    glue = boto3.client("glue", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id=TEST_KEY_ID,
                        aws_secret_access_key=TEST_SECRET)
    trades = glue.get_table(DatabaseName=database, Name="trades")["Table"]
    assert trades["Parameters"]["table_type"] == "DELTA"
    assert trades["StorageDescriptor"]["Location"] == f"s3://{bucket}/prod/table/trades"
    assert [c["Name"] for c in trades["StorageDescriptor"]["Columns"]] == [
        "exchange", "symbol", "trade_id", "id_kind", "side", "price", "quantity", "trade_ts", "ingest_ts",
        "trade_date"]
    raw = glue.get_table(DatabaseName=database, Name="raw_trades")["Table"]
    params = raw["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.exchange.type"] == "injected"
    template = params["storage.location.template"]
    assert template == f"s3://{bucket}/prod/raw/exchange=${{exchange}}/symbol=${{symbol}}/date=${{date}}/"
    assert [k["Name"] for k in raw["PartitionKeys"]] == ["exchange", "symbol", "date"]
    # the lock table init-cloud made is the one ingest uses
    db = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1",
                      aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET)
    assert db.describe_table(TableName=table)["Table"]["KeySchema"] == [{"AttributeName": "lease",
                                                                          "KeyType": "HASH"}]
    ttl = db.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_ttl"
    ddl = run_cli("athena-ddl", "--lake", lake.url, env=cli_env(None, lake))
    assert ddl.returncode == 0
    location = f"LOCATION 's3://{bucket}/prod/table/trades'"
    assert f"CREATE EXTERNAL TABLE IF NOT EXISTS {database}.trades\n{location}" in ddl.stdout
    assert f"'storage.location.template' = '{template}'" in ddl.stdout


def test_the_raw_layout_matches_the_projection_template(s3_lake: LakeRef, make_sim: SimFactory) -> None:
    """Athena finds raw files only if every key fits storage.location.template."""
    sim = make_sim()
    ingest(s3_lake, sim, ["BTC-USD"])
    keys = lake_keys(s3_lake, "raw/")
    assert keys and all(k.startswith("raw/exchange=coinbase/symbol=BTC-USD/date=20") for k in keys)
    assert all(k.split("/")[3].startswith("date=") and len(k.split("/")[3]) == len("date=2026-11-20")
               for k in keys)


# -- bad configuration ------------------------------------------------------------------------


def _fails(lake: LakeRef, *args: str, **env: str) -> tuple[str, float]:
    started = time.monotonic()
    result = run_cli(*args, "--lake", lake.url, env=cli_env(None, lake, **env), timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, (result.returncode, result.stderr)
    for secret in (TEST_SECRET, TEST_KEY_ID):
        assert secret not in result.stderr + result.stdout, "a credential reached the output"
    return result.stderr.strip().splitlines()[-1], elapsed


def test_missing_bucket_is_named(s3_lake: LakeRef) -> None:
    lake = LakeRef("s3://no-such-bucket-here/x", s3_lake.env)
    message, _ = _fails(lake, "checkpoints", "list")
    assert message == ("error: SCHEMAHUB_LAKE: bucket 'no-such-bucket-here' does not exist (create it, or "
                       "fix the lake URL)")


def test_missing_lock_table_is_named(s3_lake: LakeRef) -> None:
    message, _ = _fails(s3_lake, "locks", SCHEMAHUB_LOCKS="dynamodb://no-such-table")
    assert message == "error: SCHEMAHUB_LOCKS: DynamoDB table 'no-such-table' does not exist (create it " \
                      "with `schemahub init-cloud`)"


def test_an_s3_lake_needs_a_lock_table(s3_lake: LakeRef) -> None:
    env = {k: v for k, v in s3_lake.env.items() if k != "SCHEMAHUB_LOCKS"}
    message, _ = _fails(LakeRef(s3_lake.url, env), "locks")
    assert "SCHEMAHUB_LOCKS is not set" in message and "dynamodb://TABLE" in message


def test_unreachable_endpoint_fails_fast(s3_lake: LakeRef) -> None:
    message, elapsed = _fails(s3_lake, "checkpoints", "list", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert message.startswith("error: SCHEMAHUB_LAKE: cannot reach the AWS endpoint for s3://")
    assert "AWS_ENDPOINT_URL" in message and elapsed < 30


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("SCHEMAHUB_LAKE", "s3://Bad_Bucket/x", "is not a valid S3 bucket name"),
    ("SCHEMAHUB_LAKE", "gs://bucket/x", "scheme 'gs' is not supported"),
    ("SCHEMAHUB_LOCKS", "redis://x", "expected dynamodb://TABLE"),
    ("AWS_ENDPOINT_URL", "127.0.0.1:9", "must be an http:// or https:// URL"),
])
def test_malformed_settings_are_named(s3_lake: LakeRef, setting: str, value: str, expected: str) -> None:
    lake = LakeRef(value if setting == "SCHEMAHUB_LAKE" else s3_lake.url, s3_lake.env)
    extra = {} if setting == "SCHEMAHUB_LAKE" else {setting: value}
    message, _ = _fails(lake, "locks", **extra)
    assert setting in message and expected in message


def test_refused_credentials_are_named_and_never_printed() -> None:
    """moto checks credentials once IAM auth is on: a server of its own with it enabled."""
    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        lake = LakeRef("s3://some-bucket/x", {**aws_env(server.url), "SCHEMAHUB_LOCKS": "dynamodb://locks"})
        message, _ = _fails(lake, "checkpoints", "list")
        assert message.startswith("error: SCHEMAHUB_LAKE: AWS refused the credentials for s3://some-bucket/x")
        assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the task/instance role" in message
    finally:
        server.stop()


def test_secrets_never_reach_the_logs(s3_lake: LakeRef, make_sim: SimFactory) -> None:
    sim = make_sim()
    env = cli_env(sim, s3_lake)
    ran = [run_cli("-v", *args, "--lake", s3_lake.url, env=env) for args in (
        ("ingest", "--products", "BTC-USDT", "--since", "2020-01-01", "--rate", "1000"),
        ("transform",), ("query", "SELECT count(*) FROM trades"), ("check", "--freshness", "3650d"),
        ("compact",))]
    for result in ran:
        assert result.returncode == 0, result.stderr
        text = result.stdout + result.stderr
        assert TEST_SECRET not in text and TEST_KEY_ID not in text
        assert "X-Amz-Signature" not in text and "Authorization" not in text
    assert checkpoint(s3_lake, "BTC-USDT").last_trade_id == trade_id(sim.ground_truth("BTC-USDT")[-1])


def test_a_second_lake_in_the_same_bucket_and_table_is_independent(moto_url: str,
                                                                   make_sim: SimFactory) -> None:
    first = new_s3_lake(moto_url)
    second = LakeRef(first.url.rsplit("/", 1)[0] + "/other", first.env)
    sim = make_sim()
    assert ingest(first, sim, ["SOL-USD"]).ok and ingest(second, sim, ["SOL-USD"]).ok
    for lake in (first, second):
        assert_lake_matches_truth(lake, sim, "SOL-USD")  # each lake whole, neither saw the other's leases
    assert lake_keys(first, "raw/") == lake_keys(second, "raw/")
