"""Run history, metrics (Prometheus, CloudWatch EMF), progress lines and the dashboard, checked
against what the simulator saw and what the table holds."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemahub.dashboard.render import CERTIFICATE_STATUSES
from schemahub.infra.storage import LocalStorage
from schemahub.quality.certificates import Certificates
from schemahub.simulator.server import Faults, Simulator
from tests.conftest import SimFactory
from tests.helpers import (
    TEST_PRODUCTS,
    checkpoint,
    cli_args,
    cli_env,
    gap_ranges,
    raw_records,
    run_cli,
    table_rows,
    trade_id,
)

pytestmark = pytest.mark.slow

PRODUCTS = ["BTC-USD", "SOL-USD"]
# A 429 storm and 5xx answers, but no hangs or resets: every request the client sends gets an
# answer the simulator counted, so the two sides' counts must agree exactly.
FAULTS = Faults(rate_limit=True, rate=10.0, burst=2, error_rate=0.06)  # the client is told 120/s


def _ingest(lake: Path, sim: Simulator, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {"SCHEMAHUB_RETRY_MAX_ATTEMPTS": "30", "SCHEMAHUB_BREAKER_THRESHOLD": "30", **env}
    result = run_cli("ingest", "--products", ",".join(PRODUCTS), "--since", "2020-01-01", "--rate", "120",
                     "--lake", str(lake), *extra, env={**cli_env(sim), **env})
    assert result.returncode == 0, result.stderr
    return result


def _query(lake: Path, sql: str) -> list[dict[str, Any]]:
    result = run_cli("query", sql, "--format", "json", "--lake", str(lake), env=cli_env(None))
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def _sim_counts(sim: Simulator) -> dict[str, int]:
    stats = sim.stats()
    assert stats.get("429", 0) > 0 and stats.get("error", 0) > 0, f"no faults were injected: {stats}"
    return {"requests": stats["requests"], "429": stats["429"], "5xx": stats["error"]}


@pytest.fixture
def observed(tmp_path: Path, make_sim: SimFactory) -> tuple[Path, Simulator]:
    """ingest (with 429s and 5xx), transform, compact and check on one lake, via the CLI."""
    sim = make_sim(faults=FAULTS)
    lake = tmp_path / "lake"
    _ingest(lake, sim)
    for args in (("transform",), ("compact",), ("check", "--freshness", "3650d")):
        result = run_cli(*args, "--lake", str(lake), env=cli_env(None))
        assert result.returncode == 0, result.stderr
    return lake, sim


def test_every_run_is_recorded_and_queryable(observed: tuple[Path, Simulator]) -> None:
    lake, sim = observed
    counts = _sim_counts(sim)
    runs = _query(lake, "SELECT command, status, trades, host, pid, duration_s > 0 AS timed, "
                        "exchanges, details FROM runs")
    assert [(r["command"], r["status"]) for r in runs] == [
        ("ingest", "ok"), ("transform", "ok"), ("compact", "ok"), ("check", "ok")]
    ingest = runs[0]
    assert ingest["timed"] and ingest["pid"] > 0 and ingest["host"]
    (exchange,) = ingest["exchanges"]
    statuses = dict(exchange["statuses"])  # a MAP: [key, value] pairs in JSON
    assert exchange["requests"] == counts["requests"] == sum(statuses.values())
    assert statuses["429"] == exchange["rate_limited"] == counts["429"]
    server_errors = sum(v for k, v in statuses.items() if k.startswith("5"))
    assert server_errors == exchange["server_errors"] == counts["5xx"]
    assert sum(exchange["latency_buckets"]) == counts["requests"]  # every request was answered and timed

    products = {r["symbol"]: r for r in _query(lake, "SELECT * FROM run_products WHERE command = 'ingest'")}
    rows = table_rows(lake)
    for symbol in PRODUCTS:
        cp = checkpoint(lake, symbol)
        p = products[symbol]
        assert p["trades"] == len(raw_records(lake, symbol)) == sum(r["symbol"] == symbol for r in rows)
        assert (p["watermark_before"], p["watermark_after"]) == (cp.start_after_id, cp.last_trade_id)
        assert p["missing_ids"] == sum(b - a + 1 for a, b in gap_ranges(lake, symbol))
        assert p["raw_bytes"] == sum(f.stat().st_size for f in (lake / "raw").rglob(f"*{symbol}*.jsonl.gz"))
    transform_run = runs[1]
    assert transform_run["trades"] == len(rows)
    assert {c["name"]: c["status"] for c in orjson.loads(runs[3]["details"])["checks"]}["gaps"] == "ok"
    # One object per run, written once: nothing else is ever under runs/
    files = sorted((lake / "runs").rglob("*.json"))
    assert len(files) == 4 and all(f.parent.name.startswith("date=") for f in files)


def test_prometheus_metrics_and_the_live_dashboard(observed: tuple[Path, Simulator]) -> None:
    lake, sim = observed
    counts = _sim_counts(sim)
    server = subprocess.Popen(cli_args("serve", "--metrics", "--port", "0", "--lake", str(lake)),
                              env=cli_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving http://"), server.stderr.read() if server.stderr else line
        url = line.split()[1]
        text = httpx.get(f"{url}/metrics", timeout=30).text
        page = httpx.get(f"{url}/", timeout=60)
        assert httpx.get(f"{url}/nope", timeout=10).status_code == 404
    finally:
        server.terminate()
        server.communicate(timeout=30)
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    requests = samples["schemahub_http_requests_total"]
    assert sum(requests.values()) == counts["requests"]
    assert requests[(("exchange", "coinbase"), ("status", "429"))] == counts["429"]
    assert sum(v for k, v in requests.items() if dict(k)["status"].startswith("5")) == counts["5xx"]
    assert samples["schemahub_http_request_duration_seconds_count"][(("exchange", "coinbase"),)] == \
        counts["requests"]
    assert samples["schemahub_runs_total"] == {(("command", c), ("status", "ok")): 1.0
                                               for c in ("check", "compact", "ingest", "transform")}
    for symbol in PRODUCTS:
        labels = (("exchange", "coinbase"), ("symbol", symbol))
        assert samples["schemahub_ingested_trades_total"][labels] == len(raw_records(lake, symbol))
        assert samples["schemahub_unexplained_gaps"][labels] == 0
        lag = samples["schemahub_freshness_lag_seconds"][labels]
        cp = checkpoint(lake, symbol)
        assert cp.last_trade_time is not None
        assert abs(lag - (sim.now_us() / 1e6 - cp.last_trade_time.timestamp())) < 3600 * 24 * 30  # days old
    assert samples["schemahub_breaker_state"][(("exchange", "coinbase"),)] == 0
    assert page.status_code == 200 and "<title>SchemaHub dashboard</title>" in page.text


# The EMF specification's structure (docs.aws.amazon.com, "Specification: Embedded metric format").
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {"_aws": {
        "type": "object", "required": ["Timestamp", "CloudWatchMetrics"],
        "properties": {
            "Timestamp": {"type": "integer", "minimum": 0},
            "CloudWatchMetrics": {"type": "array", "items": {
                "type": "object", "required": ["Namespace", "Dimensions", "Metrics"],
                "properties": {
                    "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "Dimensions": {"type": "array", "items": {
                        "type": "array", "maxItems": 30, "items": {"type": "string", "minLength": 1}}},
                    "Metrics": {"type": "array", "maxItems": 100, "items": {
                        "type": "object", "required": ["Name"],
                        "properties": {"Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                       "Unit": {"type": "string"},
                                       "StorageResolution": {"enum": [1, 60]}}}}}}}}}},
}


def test_emf_lines_follow_the_specification_and_carry_the_counts(tmp_path: Path,
                                                                 make_sim: SimFactory) -> None:
    sim = make_sim(faults=FAULTS)
    result = _ingest(tmp_path / "lake", sim, SCHEMAHUB_METRICS="cloudwatch")
    counts = _sim_counts(sim)
    documents = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith('{"') and
                 '"_aws"' in line]
    assert documents, result.stderr
    values: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for doc in documents:
        jsonschema.validate(doc, EMF_SCHEMA)
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "SchemaHub"
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:  # every dimension and metric is a member of the document
                assert isinstance(doc[name], str)
        for metric in directive["Metrics"]:
            assert isinstance(doc[metric["Name"]], int | float)
        key = tuple(sorted((d, doc[d]) for d in directive["Dimensions"][0]))
        values[key] = {m["Name"]: doc[m["Name"]] for m in directive["Metrics"]}
    exchange = values[(("Exchange", "coinbase"),)]
    assert (exchange["Requests"], exchange["Http429"], exchange["Http5xx"]) == \
        (counts["requests"], counts["429"], counts["5xx"])
    assert exchange["LatencyP95"] >= exchange["LatencyP50"] > 0
    run = values[(("Command", "ingest"),)]
    assert run["RunFailed"] == 0
    assert run["Trades"] == sum(len(raw_records(tmp_path / "lake", s)) for s in PRODUCTS)
    for symbol in PRODUCTS:
        product = values[(("Exchange", "coinbase"), ("Symbol", symbol))]
        assert product["TradesIngested"] == len(raw_records(tmp_path / "lake", symbol))
        assert product["FreshnessLag"] >= 0
    # The one series the freshness alarm watches is the stalest product's lag.
    assert run["FreshnessLagMax"] == max(values[(("Exchange", "coinbase"), ("Symbol", s))]["FreshnessLag"]
                                         for s in PRODUCTS)


def test_a_failed_run_is_recorded_with_its_error(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(rate_limit=False, error_rate=1.0, only_paths="/trades"))
    lake = tmp_path / "lake"
    result = run_cli("ingest", "--products", "BTC-USD", "--since", "2020-01-01", "--lake", str(lake),
                     env=cli_env(sim, SCHEMAHUB_BREAKER_THRESHOLD="3"))
    assert result.returncode == 1
    (run,) = _query(lake, "SELECT command, status, error FROM runs")
    assert (run["command"], run["status"]) == ("ingest", "failed")
    (product,) = _query(lake, "SELECT status, error FROM run_products")
    assert product["status"] == "failed" and "looks down" in product["error"]


def test_long_stages_log_progress_when_not_on_a_terminal(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = make_sim()
    lake = tmp_path / "lake"
    _ingest(lake, sim)
    result = run_cli("transform", "--lake", str(lake), env=cli_env(None))
    lines = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    progress = [line for line in lines if (line.get("event"), line.get("stage")) == ("progress", "transform")]
    assert progress, result.stderr
    files = sum(1 for _ in (lake / "raw").rglob("*.jsonl.gz"))
    last = progress[-1]
    assert (last["done"], last["total"], last["rows"]) == (files, files, len(table_rows(lake)))


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium package)")
    return found


def test_dashboard_renders_every_chart_with_the_data_in_a_real_browser(tmp_path: Path,
                                                                      make_sim: SimFactory) -> None:
    from playwright.sync_api import sync_playwright

    browser_path = _chromium()
    # One product where the exchange skips 3% of ids: the heatmap must show it below 100%.
    gappy = replace(TEST_PRODUCTS[0], symbol="GAP-USD", gap_rate=0.03, history=4_000, first_id=5_000_001)
    # and one that trades slowly for days: closed days to certify (one made incomplete below)
    slow = replace(TEST_PRODUCTS[0], symbol="DAY-USD", trades_per_s=0.03, history=7_000, first_id=9_000_001,
                   gap_rate=0.0)
    sim = make_sim(products=[*TEST_PRODUCTS, gappy, slow], faults=FAULTS)
    market = sim.market("DAY-USD")
    bad_day = market.trades(0, market.visible(sim.now_us()))[2_000]
    sim.api.misreports.extra[("DAY-USD", bad_day.time_us // 60_000_000 * 60)] = 2
    lake = tmp_path / "lake"
    bad_day_iso = datetime.fromtimestamp(bad_day.time_us / 1e6, UTC).date().isoformat()
    result = run_cli("ingest", "--products", "BTC-USD,GAP-USD,DAY-USD", "--since", "2020-01-01",
                     "--rate", "120",
                     "--lake", str(lake), env=cli_env(sim, SCHEMAHUB_RETRY_MAX_ATTEMPTS="30",
                                                      SCHEMAHUB_BREAKER_THRESHOLD="30"))
    assert result.returncode == 0, result.stderr
    for args in (("transform",), ("certify",), ("check", "--freshness", "3650d")):
        assert run_cli(*args, "--lake", str(lake), env=cli_env(sim)).returncode == 0
    out = tmp_path / "dashboard.html"
    written = run_cli("dashboard", "--output", str(out), "--lake", str(lake), env=cli_env(None))
    assert written.returncode == 0, written.stderr
    assert "https://" not in out.read_text().split("<script>")[0]  # nothing fetched from the network

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 7")
        charts = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')]
            .map(el => [el.id, {traces: el.data.length,
                                points: el.data.reduce((n, t) => n + ((t.z || t.y || t.x || []).length), 0),
                                z: el.data[0].z || null, y: el.data[0].y || null,
                                x: el.data[0].x || null, text: el.data[0].text || null}]))""")
        # hovering the incomplete day's cell shows its reasons
        heat = page.locator("#certificates .nsewdrag").first
        heat.scroll_into_view_if_needed()
        box = heat.bounding_box()
        cert_x = charts["certificates"]["x"]
        column = cert_x.index(bad_day_iso)
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * (column + 0.5) / len(cert_x), box["y"] + box["height"] / 2,
                        steps=5)
        page.wait_for_selector("#certificates .hovertext")
        hover = page.locator("#certificates .hovertext").first.text_content() or ""
        trades_card = page.inner_text("[data-metric='trades']")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        browser.close()
    assert errors == []
    assert set(charts) == {"operations", "api-health", "completeness", "certificates", "gaps", "freshness",
                           "storage"}
    # the calendar: one row (DAY-USD), a cell per certified day coloured by its status
    certified = {r["day"].isoformat(): r for r in Certificates(LocalStorage(lake)).rows()}
    assert charts["certificates"]["y"] == ["coinbase DAY-USD"]
    assert charts["certificates"]["x"] == sorted(certified)
    assert charts["certificates"]["z"] == [[CERTIFICATE_STATUSES.index(certified[d]["status"])
                                            for d in sorted(certified)]]
    assert certified[bad_day_iso]["status"] == "incomplete"
    assert {r["status"] for d, r in certified.items() if d != bad_day_iso} == {"certified"}
    assert "incomplete" in hover and "candles 1m: disagrees (1 difference(s))" in hover
    for name, chart in charts.items():
        assert chart["traces"] > 0 and chart["points"] > 0, f"{name} rendered no data"
    rows = table_rows(lake)
    assert trades_card == f"{len(rows):,}"
    # The heatmap cell of GAP-USD is the share of its id span the table holds, as the simulator made it.
    products = charts["completeness"]["y"]
    gap_row = charts["completeness"]["z"][products.index("coinbase GAP-USD")]
    truth = sim.ground_truth("GAP-USD")
    span = trade_id(truth[-1]) - trade_id(truth[0]) + 1
    expected = 100 * len(truth) / span
    assert [v for v in gap_row if v is not None] == [pytest.approx(expected, abs=1e-3)]
    assert expected < 99
    btc_row = charts["completeness"]["z"][products.index("coinbase BTC-USD")]
    assert all(v > expected for v in btc_row if v is not None)
    assert checkpoint(lake, "GAP-USD").last_trade_id == trade_id(truth[-1])
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000
