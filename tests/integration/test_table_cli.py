"""`schemahub query`, `check` and `compact` as users run them, on a lake built once."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from schemahub import pipeline
from schemahub.infra.s3 import parse_s3_url
from schemahub.settings import Settings
from schemahub.simulator.server import Faults, ManualClock, Simulator
from schemahub.table.delta import TradesTable
from tests.helpers import (
    SIM_START,
    TEST_PRODUCTS,
    cli_env,
    delta_table,
    expected_rows,
    gap_ranges,
    ingest,
    run_cli,
    table_rows,
    transform,
)
from tests.lakes import LakeRef, new_s3_lake, s3_client

pytestmark = pytest.mark.slow
PRODUCTS = ["BTC-USD", "SOL-USD", "BTC-USDT"]


@pytest.fixture(scope="module", params=["local", "s3"])
def built(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LakeRef, Simulator]]:
    if request.param == "local":
        lake = LakeRef(str(tmp_path_factory.mktemp("lake")))
    else:
        lake = new_s3_lake(request.getfixturevalue("moto_url"))
    sim = Simulator("coinbase", TEST_PRODUCTS, seed=7, clock=ManualClock(SIM_START),
                    faults=Faults(rate_limit=False)).start()
    try:
        ingest(lake, sim, PRODUCTS)
        transform(lake)
        assert isinstance(sim.clock, ManualClock)
        sim.clock.advance(1800)
        ingest(lake, sim, PRODUCTS)
        transform(lake)  # two versions: time travel has somewhere to go
        yield lake, sim
    finally:
        sim.stop()


@pytest.fixture
def lake_copy(built: tuple[LakeRef, Simulator], tmp_path: Path, request: pytest.FixtureRequest) -> LakeRef:
    """A copy of the built lake that a test may damage."""
    source = built[0]
    if source.kind == "local":
        shutil.copytree(source.url, tmp_path / "lake")
        return LakeRef(str(tmp_path / "lake"))
    endpoint = request.getfixturevalue("moto_url")
    copy = new_s3_lake(endpoint)
    s3 = s3_client(endpoint)
    (bucket, prefix), (into, into_prefix) = (parse_s3_url(source.url), parse_s3_url(copy.url))
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            s3.copy_object(Bucket=into, Key=into_prefix + item["Key"][len(prefix):],
                           CopySource={"Bucket": bucket, "Key": item["Key"]})
    return copy


def _cli(lake: LakeRef, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--lake", lake.url, env=cli_env(None, lake))


def _query(lake: LakeRef, *args: str) -> str:
    result = _cli(lake, "query", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_query_formats_carry_the_exact_rows(built: tuple[LakeRef, Simulator], tmp_path: Path) -> None:
    lake, sim = built
    sql = "SELECT * FROM trades ORDER BY exchange, symbol, CAST(trade_id AS BIGINT)"
    want = expected_rows(lake, sim, PRODUCTS)
    out = tmp_path / "all.parquet"
    _query(lake, sql, "--format", "parquet", "--output", str(out))
    assert pq.read_table(out).to_pylist() == want
    lines = _query(lake, sql, "--format", "json").splitlines()
    assert len(lines) == len(want)
    first = orjson.loads(lines[0])
    assert first["trade_id"] == want[0]["trade_id"] and first["side"] == want[0]["side"]
    csv_text = _query(lake, "SELECT symbol, count(*) AS n FROM trades GROUP BY 1 ORDER BY 1",
                      "--format", "csv")
    counts = {s: sum(1 for r in want if r["symbol"] == s) for s in PRODUCTS}
    assert csv_text.splitlines() == ['"symbol","n"', *(f'"{s}",{counts[s]}' for s in sorted(PRODUCTS))]


def test_time_travel_by_version_and_time(built: tuple[LakeRef, Simulator], tmp_path: Path) -> None:
    lake, _ = built
    history = delta_table(lake).history()
    first_write = min(h["version"] for h in history if h["operation"] == "WRITE")
    rows_then = table_rows(lake, version=first_write)
    assert 0 < len(rows_then) < len(table_rows(lake))
    sql = "SELECT * FROM trades ORDER BY exchange, symbol, CAST(trade_id AS BIGINT)"
    moment = next(h["timestamp"] for h in history if h["version"] == first_write)
    as_of = datetime.fromtimestamp(moment / 1000, UTC).isoformat()
    for pin in (["--version", str(first_write)], ["--as-of", as_of]):
        out = tmp_path / f"{pin[0][2:]}.parquet"
        _query(lake, sql, *pin, "--format", "parquet", "--output", str(out))
        assert pq.read_table(out).to_pylist() == rows_then, pin


def test_the_view_reads_exactly_the_snapshots_files(built: tuple[LakeRef, Simulator],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The `trades` view lists the live files itself (no per-query Delta log replay): they
    must be exactly the ones a Delta reader sees, at the latest and at an older version."""
    lake, _ = built
    for name, value in lake.env.items():
        monkeypatch.setenv(name, value)
    engine = pipeline.query_engine(Settings.load(lake.url))
    try:
        view = engine.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'trades'")["sql"][0].as_py()
    finally:
        engine.close()
    assert "read_parquet" in view and "delta_scan" not in view
    storage = lake.storage()
    table = TradesTable.of(storage)
    for version in (None, 1):
        delta = table.load(version)
        assert delta is not None
        files = table.data_files(delta)
        assert files is not None and sorted(files) == sorted(delta.file_uris())


def test_a_foreign_file_layout_is_read_through_delta_scan(lake_copy: LakeRef) -> None:
    """A table whose file paths do not spell their partition values (other writers may lay
    files out so) must still read right: the view falls back to DuckDB's Delta reader."""
    if lake_copy.kind != "local":
        pytest.skip("moving a data file by hand is only done on the local lake")
    want = table_rows(lake_copy)
    root = Path(lake_copy.url) / "table" / "trades"
    moved = next(root.glob("exchange=*/trade_date=*/*.parquet"))
    old_path = moved.relative_to(root).as_posix()
    (root / "elsewhere").mkdir()
    moved.rename(root / "elsewhere" / moved.name)
    for log in (root / "_delta_log").glob("*.json"):
        log.write_text(log.read_text().replace(f'"path":"{old_path}"', f'"path":"elsewhere/{moved.name}"'))
    assert table_rows(lake_copy) == want  # the table is intact for a Delta reader
    table = TradesTable(str(root))
    delta = table.load()
    assert delta is not None and table.data_files(delta) is None
    engine = pipeline.query_engine(Settings.load(lake_copy.url))
    try:
        view = engine.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'trades'")["sql"][0].as_py()
        got = engine.sql("SELECT * FROM trades ORDER BY exchange, symbol, CAST(trade_id AS BIGINT)")
    finally:
        engine.close()
    assert "delta_scan" in view
    assert got.to_pylist() == want


def test_a_data_file_missing_under_the_table_is_a_clear_error(lake_copy: LakeRef) -> None:
    storage = lake_copy.storage()
    delta = delta_table(lake_copy)
    victim = sorted(pa.table(delta.get_add_actions(flatten=True))["path"].to_pylist())[0]
    storage.delete(f"table/trades/{victim}")
    result = _cli(lake_copy, "query", "SELECT count(*) FROM trades")
    assert result.returncode == 2
    assert f"lists a data file that is gone: {storage.url_for('table/trades/' + victim)} (" in result.stderr


def test_query_errors_are_clear(built: tuple[LakeRef, Simulator], tmp_path: Path) -> None:
    lake, _ = built
    bad = run_cli("query", "SELEC nonsense", "--lake", lake.url, env=cli_env(None, lake))
    assert bad.returncode == 2 and bad.stderr.startswith("error: query failed: Parser Error")
    none = tmp_path / "none"
    missing = run_cli("query", "SELECT count(*) FROM trades", "--lake", str(none), env=cli_env(None))
    assert missing.returncode == 2 and f"no lake at {none}" in missing.stderr and not none.exists()
    none.mkdir()  # a lake with nothing in it yet
    empty = run_cli("query", "SELECT count(*) FROM trades", "--lake", str(none), env=cli_env(None))
    assert empty.returncode == 2 and "run `schemahub transform` first" in empty.stderr
    future = run_cli("query", "SELECT 1", "--version", "999", "--lake", lake.url, env=cli_env(None, lake))
    assert future.returncode == 2 and "--version 999 does not exist" in future.stderr
    parquet = run_cli("query", "SELECT 1", "--format", "parquet", "--lake", lake.url, env=cli_env(None, lake))
    assert parquet.returncode == 2 and "--format parquet needs --output FILE" in parquet.stderr
    elsewhere = f"{tmp_path}/not-ours.parque[t]"  # a missing file that is not the table's
    other = run_cli("query", f"SELECT * FROM read_parquet('{elsewhere}')", "--lake", lake.url,
                    env=cli_env(None, lake))
    assert other.returncode == 2 and "No files found that match the pattern" in other.stderr
    assert "data file that is gone" not in other.stderr


def test_example_queries_agree_with_the_data(built: tuple[LakeRef, Simulator]) -> None:
    lake, sim = built
    want = expected_rows(lake, sim, PRODUCTS)
    day = want[0]["trade_date"].isoformat()
    bars = [orjson.loads(line) for line in _query(
        lake, "--file", "sql/ohlcv_1m.sql", "--param", "symbol=BTC-USD", "--param", f"day={day}",
        "--format", "json").splitlines()]
    day_trades = [r for r in want if r["symbol"] == "BTC-USD" and r["trade_date"].isoformat() == day]
    assert sum(b["trades"] for b in bars) == len(day_trades)
    assert all(b["low"] <= b["vwap"] <= b["high"] and b["low"] <= b["open"] <= b["high"] for b in bars)
    assert bars[0]["open"] == min(day_trades, key=lambda r: (r["trade_ts"], int(r["trade_id"])))["price"]
    assert _query(lake, "--file", "sql/duplicates.sql", "--format", "csv").splitlines()[1:] == []
    gaps = [orjson.loads(line)
            for line in _query(lake, "--file", "sql/id_gaps.sql", "--format", "json").splitlines()]
    assert [(g["first_missing"], g["last_missing"]) for g in gaps if g["symbol"] == "BTC-USD"] == \
        gap_ranges(lake, "BTC-USD")
    daily = [orjson.loads(line)
             for line in _query(lake, "--file", "sql/daily_volume.sql", "--format", "json").splitlines()]
    assert sum(d["trades"] for d in daily) == len(want)
    fresh = _query(lake, "--file", "sql/freshness.sql", "--format", "csv").splitlines()
    assert len(fresh) == 1 + len(PRODUCTS)


def test_check_passes_on_a_healthy_lake(built: tuple[LakeRef, Simulator]) -> None:
    lake, _ = built
    result = run_cli("check", "--json", "--freshness", "3650d", "--lake", lake.url, env=cli_env(None, lake))
    assert result.returncode == 0, result.stdout
    statuses = {c["name"]: c["status"] for c in orjson.loads(result.stdout)}
    assert statuses == {"duplicates": "ok", "gaps": "ok", "freshness": "ok", "values": "ok", "state": "ok",
                        "future": "ok", "quarantine": "ok", "certificates": "skip"}  # none issued yet


def _append(lake: LakeRef, rows: list[dict[str, object]]) -> None:
    delta = delta_table(lake)
    table = pa.Table.from_pylist(rows, schema=pa.schema(delta.schema()))
    write_deltalake(delta, table, mode="append")


def test_check_finds_what_is_wrong(lake_copy: LakeRef) -> None:
    rows = table_rows(lake_copy)
    duplicate = dict(rows[10])
    negative = dict(rows[20], trade_id="999999999999", price=-1.0)
    future = dict(rows[30], trade_id="999999999998",
                  trade_ts=datetime(2099, 1, 1, tzinfo=UTC), trade_date=datetime(2099, 1, 1).date())
    _append(lake_copy, [duplicate, negative, future])
    result = _cli(lake_copy, "check", "--json", "--freshness", "1m")
    assert result.returncode == 1
    checks = {c["name"]: c for c in orjson.loads(result.stdout)}
    assert checks["duplicates"]["status"] == "fail"
    assert checks["duplicates"]["details"][0]["trade_id"] == duplicate["trade_id"]
    assert checks["values"]["status"] == "fail" and checks["values"]["details"][0]["price"] == -1.0
    assert checks["future"]["status"] == "fail"
    assert checks["freshness"]["status"] == "fail"  # the simulated market is days old
    assert checks["gaps"]["status"] == "fail"  # a duplicate makes the counts disagree


def test_check_reports_an_unexplained_gap(lake_copy: LakeRef) -> None:
    delta = delta_table(lake_copy)
    victim = table_rows(lake_copy)[100]
    delta.delete(f"symbol = '{victim['symbol']}' AND trade_id = '{victim['trade_id']}'")
    result = _cli(lake_copy, "check", "--json", "--freshness", "3650d")
    assert result.returncode == 1
    gaps = next(c for c in orjson.loads(result.stdout) if c["name"] == "gaps")
    product = next(d for d in gaps["details"] if d["symbol"] == victim["symbol"])
    assert product["unexplained_gaps"] == [[int(victim["trade_id"]), int(victim["trade_id"])]]


def test_compact_cli_rewrites_files_and_vacuums(lake_copy: LakeRef, tmp_path: Path) -> None:
    before = table_rows(lake_copy)
    files_before = len(delta_table(lake_copy).file_uris())
    result = run_cli("compact", "--zorder", "--vacuum", "--retain-hours", "1", "--lake", lake_copy.url,
                     env=cli_env(None, lake_copy))
    assert result.returncode == 0, result.stderr
    assert "compacted: version" in result.stdout
    assert len(delta_table(lake_copy).file_uris()) < files_before
    assert table_rows(lake_copy) == before
    # The replaced files stay on disk for the retention period; queries read only live ones.
    on_disk = [info for info in lake_copy.storage().list("table/trades/") if info.key.endswith(".parquet")]
    assert len(on_disk) > len(delta_table(lake_copy).file_uris())
    out = tmp_path / "after.parquet"
    _query(lake_copy, "SELECT * FROM trades ORDER BY exchange, symbol, CAST(trade_id AS BIGINT)",
           "--format", "parquet", "--output", str(out))
    assert pq.read_table(out).to_pylist() == before
    guard = run_cli("compact", "--vacuum", "--retain-hours", "0", "--lake", lake_copy.url,
                    env=cli_env(None, lake_copy))
    assert guard.returncode == 2 and "guard" in guard.stderr
