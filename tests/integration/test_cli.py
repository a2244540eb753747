"""The command line as users run it: real processes, exit codes, messages, and what is (not) written."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from schemahub.simulator.server import Simulator
from schemahub.sources.registry import list_exchanges
from tests.helpers import assert_lake_matches_truth, checkpoint, cli_env, run_cli
from tests.lakes import LakeRef

pytestmark = pytest.mark.slow


def _nothing_written(lake: Path) -> bool:
    return not lake.exists() or not any(lake.iterdir())


def test_unknown_exchange(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = run_cli("ingest", "--exchange", "nope", "--products", "BTC-USD", "--lake", str(lake),
                     env=cli_env(None))
    assert result.returncode == 2
    assert f"unknown exchange 'nope'; known: {', '.join(list_exchanges())}" in result.stderr
    assert _nothing_written(lake)


@pytest.mark.parametrize("bad", ["../etc", "BTC/USD", "btc_usd", "BTC-USD-X", "BTC-", "-USD", "BTC USD",
                                 "BTC-ÜSD", "BTC-USD;ls", "%2e%2e"])
def test_malformed_product_ids_never_reach_a_path(tmp_path: Path, sim: Simulator, bad: str) -> None:
    lake = tmp_path / "lake"
    result = run_cli("ingest", "--products", bad, "--lake", str(lake), env=cli_env(sim))
    assert result.returncode == 2, result.stderr
    assert "invalid product id" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _nothing_written(lake)


def test_unknown_but_well_formed_product(tmp_path: Path, sim: Simulator) -> None:
    result = run_cli("ingest", "--products", "BTC-USF", "--lake", str(tmp_path / "lake"), env=cli_env(sim))
    assert result.returncode == 2
    assert "coinbase has no product 'BTC-USF' (did you mean BTC-USD" in result.stderr


def test_unreachable_exchange_fails_fast_and_writes_only_its_run_record(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    started = time.monotonic()
    result = run_cli("ingest", "--products", "BTC-USD", "--lake", str(lake),
                     env=cli_env(None, SCHEMAHUB_COINBASE_URL="http://127.0.0.1:9"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: coinbase: cannot reach http://127.0.0.1:9 (ConnectError:"), last
    assert "gave up after" in last  # the retries ran out, and it says so
    assert time.monotonic() - started < 20
    written = [p.relative_to(lake).parts[0] for p in lake.rglob("*") if p.is_file()]
    assert written == ["runs"]  # no data, no state: only the record of the failed run
    [record] = [orjson.loads(p.read_bytes()) for p in (lake / "runs").rglob("*.json")]
    assert record["status"] == "failed"
    assert [(p["symbol"], p["status"]) for p in record["products"]] == [("BTC-USD", "failed")]
    assert "cannot reach" in record["products"][0]["error"]


def test_corrupt_checkpoint_names_the_file_and_the_recovery(tmp_path: Path, sim: Simulator) -> None:
    lake = tmp_path / "lake"
    first = run_cli("ingest", "--products", "BTC-USDT", "--since", "2020-01-01", "--rate", "1000",
                    "--lake", str(lake), env=cli_env(sim))
    assert first.returncode == 0, first.stderr
    good = checkpoint(lake, "BTC-USDT")
    path = lake / "state" / "checkpoints" / "coinbase" / "BTC-USDT.json"
    path.write_text('{"exchange": "coinbase", "last_trade_id": ')  # a torn write by some other tool
    raw_before = sorted(p.name for p in (lake / "raw").rglob("*.gz"))

    result = run_cli("ingest", "--products", "BTC-USDT", "--lake", str(lake), env=cli_env(sim))
    assert result.returncode == 1
    assert str(path) in result.stderr and "is corrupt" in result.stderr
    assert "schemahub checkpoints rebuild --exchange coinbase --products BTC-USDT" in result.stderr
    assert sorted(p.name for p in (lake / "raw").rglob("*.gz")) == raw_before

    repaired = run_cli("checkpoints", "rebuild", "--products", "BTC-USDT", "--lake", str(lake),
                       env=cli_env(sim))
    assert repaired.returncode == 0, repaired.stderr
    rebuilt = checkpoint(lake, "BTC-USDT")
    assert (rebuilt.start_after_id, rebuilt.last_trade_id) == (good.start_after_id, good.last_trade_id)
    assert rebuilt.last_trade_time == good.last_trade_time
    again = run_cli("ingest", "--products", "BTC-USDT", "--lake", str(lake), env=cli_env(sim))
    assert again.returncode == 0, again.stderr
    assert_lake_matches_truth(lake, sim, "BTC-USDT")


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "--since 'yesterday' is neither an ISO-8601 time"),
    (["--since", "2999-01-01"], "is in the future"),
    (["--products", ","], "--products is empty"),
])
def test_bad_flags(tmp_path: Path, args: list[str], message: str) -> None:
    lake = tmp_path / "lake"
    result = run_cli("ingest", *args, "--lake", str(lake), env=cli_env(None))
    assert result.returncode == 2
    assert message in result.stderr
    assert _nothing_written(lake)


def test_bad_environment_setting_is_named(tmp_path: Path, sim: Simulator) -> None:
    result = run_cli("ingest", "--products", "BTC-USD", "--lake", str(tmp_path),
                     env=cli_env(sim, SCHEMAHUB_RETRY_BASE="fast"))
    assert result.returncode == 2
    assert "SCHEMAHUB_RETRY_BASE='fast' is not a number" in result.stderr
    bad_url = run_cli("ingest", "--products", "BTC-USD", "--lake", str(tmp_path),
                      env=cli_env(sim, SCHEMAHUB_COINBASE_URL="ftp://x"))
    assert bad_url.returncode == 2
    assert "SCHEMAHUB_COINBASE_URL='ftp://x' must be an http:// or https:// URL" in bad_url.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, sim: Simulator) -> None:
    lake = tmp_path / "lake"
    result = run_cli("ingest", "--products", "BTC-USD,SOL-USD", "--since", "2020-01-01", "--dry-run",
                     "--rate", "1000", "--json", "--lake", str(lake), env=cli_env(sim))
    assert result.returncode == 0, result.stderr
    plan = orjson.loads(result.stdout)
    assert plan["dry_run"] is True
    by_symbol = {p["symbol"]: p for p in plan["products"]}
    btc = by_symbol["BTC-USD"]
    assert btc["status"] == "planned"
    # the requests planning made (head, cold-start search) are made again by the run, then one a chunk
    chunks = -(-(btc["head_id"] - btc["watermark_before"]) // 1000)
    assert btc["planned_requests"] == btc["stats"]["requests"] + chunks
    total = sum(p["planned_requests"] for p in plan["products"])
    assert plan["estimated_seconds"] == pytest.approx((total - 10) / 1000.0)  # a burst of 10 at once
    assert _nothing_written(lake)


def test_update_seed_then_ingest_uses_it(tmp_path: Path, sim: Simulator) -> None:
    lake = tmp_path / "lake"
    env = cli_env(sim)
    dry = run_cli("update-seed", "--exchange", "coinbase", "--dry-run", "--lake", str(lake), env=env)
    assert dry.returncode == 0 and "would write 3 coinbase products" in dry.stdout
    assert "OLD-USD" not in dry.stdout  # delisted: not tradable
    assert _nothing_written(lake)

    seeded = run_cli("update-seed", "--exchange", "coinbase", "--filter", "-USD$", "--lake", str(lake),
                     env=env)
    assert seeded.returncode == 0, seeded.stderr
    seed = orjson.loads((lake / "state" / "seeds" / "coinbase.json").read_bytes())
    assert [p["symbol"] for p in seed["products"]] == ["BTC-USD", "SOL-USD"]

    ran = run_cli("ingest", "--since", "2020-01-01", "--rate", "1000", "--json", "--lake", str(lake), env=env)
    assert ran.returncode == 0, ran.stderr
    assert sorted(p["symbol"] for p in orjson.loads(ran.stdout)["products"]) == ["BTC-USD", "SOL-USD"]
    for symbol in ("BTC-USD", "SOL-USD"):
        assert_lake_matches_truth(lake, sim, symbol)

    bad = run_cli("update-seed", "--filter", "([", "--lake", str(lake), env=env)
    assert bad.returncode == 2 and "is not a valid regular expression" in bad.stderr


def test_ingest_without_seed_or_products_explains_what_to_do(tmp_path: Path, sim: Simulator) -> None:
    result = run_cli("ingest", "--lake", str(tmp_path / "lake"), env=cli_env(sim))
    assert result.returncode == 2
    assert "run `schemahub update-seed --exchange coinbase` first" in result.stderr


def test_every_command_has_help() -> None:
    from typer.main import get_command

    import schemahub.cli.main  # noqa: F401 - registers every command
    from schemahub.cli.app import app

    group = get_command(app)
    names = ["run", "update-seed", "ingest", "repair", "transform", "compact", "certify", "check", "query",
             "export", "quarantine", "checkpoints", "locks", "dashboard", "serve", "init-cloud", "athena-ddl",
             "doctor", "simulate", "version"]
    assert sorted(group.commands) == sorted(names)  # type: ignore[attr-defined]
    runner = CliRunner()  # in-process: one interpreter start per command would cost 20 s
    for name in names:
        result = runner.invoke(app, [name, "--help"], prog_name="schemahub")
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output
    # `schemahub --help` lists them in the order data flows through them, then the tools
    overview = run_cli("--help", env=cli_env(None)).stdout
    listed = [line.split()[0] for line in overview.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == names


def test_doctor_checks_the_installation_and_the_lake(lake: LakeRef) -> None:
    offline = run_cli("doctor", "--offline", env=cli_env(None))
    assert offline.returncode == 0, offline.stdout + offline.stderr
    lines = offline.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "engines"], ["ok", "connectors"],
                                                    ["ok", "settings"]]
    assert "binance (historicalTrades, aggTrades); bitfinex (trades); bybit (trades); coinbase (trades)" \
        in lines[1]
    if lake.kind == "local":
        missing = run_cli("doctor", "--lake", lake.url, env=cli_env(None, lake))
        assert missing.returncode == 1 and f"no lake at {lake.url}" in missing.stdout  # and none made
        Path(lake.url).mkdir()
    full = run_cli("doctor", "--lake", lake.url, env=cli_env(None, lake))
    assert full.returncode == 0, full.stdout + full.stderr
    assert full.stdout.splitlines()[-1].split()[:2] == ["ok", "lake"]


def test_doctor_names_what_is_wrong(s3_lake: LakeRef) -> None:
    env = cli_env(None, s3_lake, SCHEMAHUB_LOCKS="dynamodb://no-such-table", SCHEMAHUB_RETRY_CAP="bad")
    result = run_cli("doctor", "--lake", s3_lake.url, env=env)
    assert result.returncode == 1
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["settings"].startswith("FAIL") and "SCHEMAHUB_RETRY_CAP" in lines["settings"]
    assert lines["lake"].startswith("FAIL") and "SCHEMAHUB_LOCKS" in lines["lake"]
    assert "no-such-table" in lines["lake"]
    assert lines["engines"].startswith("ok")
