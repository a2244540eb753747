"""`schemahub repair` closes the loop of the certificates, checked against ground truth.

A transient hole (ids the exchange left out of its pages during the first run and serves
later) ends `certified` with its ids in the table exactly once; a permanent exchange gap is
asked once more and ends `certified_with_exchange_gaps` with the confirmation as evidence;
a quarantined file and rows lost from the table are fetched again; a day where the venue's
klines report one trade more than exists stays `incomplete` whatever repair does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from schemahub import pipeline
from schemahub.infra.storage import LocalStorage
from schemahub.metrics.runs import load_all
from schemahub.quality.certificates import Certificates
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.market import ProductSpec
from schemahub.simulator.server import Faults, Simulator
from tests.conftest import SimFactory
from tests.helpers import (
    EPOCH_2020_US,
    assert_table_matches_truth,
    cli_env,
    delta_table,
    expected_rows,
    gap_ranges,
    ingest,
    raw_files,
    run_cli,
    settings,
    table_rows,
    transform,
)

DAY = date(2026, 11, 17)
NOW_WAIT = {"SCHEMAHUB_REPAIR_GAP_WAIT": "0"}  # gaps are due to be asked again at once


def _spec(exchange: str, gap_rate: float) -> ProductSpec:
    """About 4.6 days of history at one trade every 20 s: whole closed days to certify."""
    return replace(simulator_class(exchange).test_products[0], trades_per_s=0.05, history=20_000,
                   gap_rate=gap_rate)


def _certificates(lake: Path) -> dict[date, dict[str, Any]]:
    return {r["day"]: r for r in Certificates(LocalStorage(lake)).rows()}


def _ids_of_day(sim: Simulator, symbol: str, day: date) -> list[int]:
    market = sim.market(symbol)
    return [t.trade_id for t in market.trades(0, market.visible(sim.now_us()))
            if datetime.fromtimestamp(t.time_us / 1e6, UTC).date() == day]


def _repair(lake: Path, sim: Simulator, *args: str) -> Any:
    done = run_cli("repair", "--json", *args, "--lake", str(lake), env=cli_env(sim, None, **NOW_WAIT))
    assert done.returncode == 0, done.stdout + done.stderr
    return orjson.loads(done.stdout)


def test_a_transient_hole_is_repaired_and_the_day_certified(tmp_path: Path, make_sim: SimFactory) -> None:
    spec = _spec("coinbase", gap_rate=0.0)
    sim = make_sim(products=[spec], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    ids = _ids_of_day(sim, spec.symbol, DAY)
    hole = (ids[len(ids) // 2], ids[len(ids) // 2 + 6])
    sim.api.withheld[spec.symbol] = hole  # the exchange leaves seven trades out of its pages
    ingest(lake, sim, [spec.symbol], since_us=EPOCH_2020_US)
    transform(lake)
    assert gap_ranges(lake, spec.symbol) == [hole]  # seen as skipped by the exchange
    pipeline.certify(settings(lake, sim))
    before = _certificates(lake)[DAY]
    assert before["status"] == "incomplete"  # the candles count those trades' volume
    assert json.loads(before["cross_check"])["result"] == "disagrees"

    sim.api.withheld.clear()  # restored by the exchange
    planned = _repair(lake, sim, "--dry-run")
    assert [(i["kind"], i["first_id"], i["last_id"]) for i in planned["items"]] == [
        ("exchange_gap", *hole)]
    assert planned["reports"] == []  # a dry run fetches nothing
    assert gap_ranges(lake, spec.symbol) == [hole]
    repaired = _repair(lake, sim)
    assert repaired["transform"]["rows_written"] == 7
    assert_table_matches_truth(lake, sim, [spec.symbol])  # every trade once, the seven included
    assert gap_ranges(lake, spec.symbol) == []  # no longer a gap: the exchange served them

    report = pipeline.certify(settings(lake, sim))
    assert report.computed == 1  # only the repaired day changed
    after = _certificates(lake)[DAY]
    assert after["status"] == "certified" and after["trades"] == len(ids)
    assert json.loads(after["cross_check"])["result"] == "agrees"
    history = [r for r in load_all(LocalStorage(lake)) if r.command == "repair"]
    assert [(i["kind"], i["first_id"]) for i in history[-1].details["repaired"]] == [
        ("exchange_gap", hole[0])]
    assert _repair(lake, sim)["items"] == []  # idempotent: nothing left to do


def test_a_permanent_gap_is_confirmed_once_and_kept_as_evidence(tmp_path: Path, make_sim: SimFactory) -> None:
    spec = _spec("coinbase", gap_rate=0.002)
    sim = make_sim(products=[spec], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    ingest(lake, sim, [spec.symbol], since_us=EPOCH_2020_US)
    transform(lake)
    pipeline.certify(settings(lake, sim))
    logged = gap_ranges(lake, spec.symbol)
    assert logged

    repaired = _repair(lake, sim)
    assert sorted((i["first_id"], i["last_id"]) for i in repaired["items"]) == logged
    assert {i["kind"] for i in repaired["items"]} == {"exchange_gap"} and repaired["transform"] is None
    assert gap_ranges(lake, spec.symbol) == logged  # still absent: kept, now confirmed
    report = pipeline.certify(settings(lake, sim))
    assert report.computed > 0  # the evidence changed: the days with gaps are certified again
    for day, row in _certificates(lake).items():
        evidence = json.loads(row["evidence"])["exchange_gaps"]
        if evidence:
            assert row["status"] == "certified_with_exchange_gaps", day
            assert all(len(g["confirmed_at"]) == 1 for g in evidence), evidence
    assert _repair(lake, sim)["items"] == []  # confirmed gaps are never asked again
    assert_table_matches_truth(lake, sim, [spec.symbol])


def test_quarantined_files_and_lost_rows_are_fetched_again(tmp_path: Path, make_sim: SimFactory) -> None:
    spec = _spec("coinbase", gap_rate=0.0)
    sim = make_sim(products=[spec], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    ingest(lake, sim, [spec.symbol], since_us=EPOCH_2020_US)
    key = sorted(k for k, _, _ in raw_files(lake, spec.symbol))[3]
    storage = LocalStorage(lake)
    storage.write(key, (storage.read(key) or b"")[:200])  # cut: the transform quarantines it
    assert run_cli("transform", "--lake", str(lake), env=cli_env(None)).returncode == 4
    ids = _ids_of_day(sim, spec.symbol, DAY)
    lost = (ids[10], ids[19])
    delta_table(lake).delete(f"CAST(trade_id AS BIGINT) BETWEEN {lost[0]} AND {lost[1]}")

    planned = _repair(lake, sim, "--dry-run")
    assert {i["kind"] for i in planned["items"]} == {"quarantined", "unexplained_gap"}
    gaps = [(i["first_id"], i["last_id"]) for i in planned["items"] if i["kind"] == "unexplained_gap"]
    assert gaps == [lost]
    repaired = _repair(lake, sim)  # releases the quarantined file itself, fetches both, transforms
    assert repaired["transform"]["rows_written"] > 10

    def unified(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:  # the lost rows' fetch is the repair's
        return [{k: v for k, v in r.items() if k != "ingest_ts"} for r in rows]

    assert unified(table_rows(lake)) == unified(expected_rows(lake, sim, [spec.symbol]))
    green = run_cli("check", "--freshness", "3650d", "--lake", str(lake), env=cli_env(None))
    assert green.returncode == 0, green.stdout


def test_a_day_the_venue_counts_differently_stays_incomplete(tmp_path: Path, make_sim: SimFactory) -> None:
    spec = replace(simulator_class("binance").test_products[1], trades_per_s=0.05, history=20_000,
                   gap_rate=0.0)
    sim = make_sim(exchange="binance", products=[spec], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    market = sim.market(spec.symbol)
    trade = next(t for t in market.trades(0, market.visible(sim.now_us()))
                 if datetime.fromtimestamp(t.time_us / 1e6, UTC).date() == DAY)
    minute_s = trade.time_us // 60_000_000 * 60
    sim.api.misreports.extra[(spec.symbol, minute_s)] = 1  # the klines claim one trade more
    ingest(lake, sim, [spec.symbol], since_us=EPOCH_2020_US)
    transform(lake)
    pipeline.certify(settings(lake, sim))
    rows = _certificates(lake)
    day = rows.pop(DAY)
    assert day["status"] == "incomplete" and day["unexplained_ids"] == 0  # the ids are whole
    cross = json.loads(day["cross_check"])
    assert cross["source"] == "klines 1m" and cross["differences"] == 2  # count and volume
    minute = datetime.fromtimestamp(minute_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    trades = next(d for d in cross["first_differences"] if d["figure"] == "trades")
    assert trades["interval"] == minute and trades["venue"] == trades["ours"] + 1
    assert {r["status"] for r in rows.values()} == {"certified"}  # klines agree on every other day

    repaired = _repair(lake, sim)
    assert [i["kind"] for i in repaired["items"]] == ["cross_check"]  # listed: nothing to fetch
    assert repaired["reports"] == [] and repaired["transform"] is None
    pipeline.certify(settings(lake, sim))
    assert _certificates(lake)[DAY]["status"] == "incomplete"  # repair cannot hide it
    assert_table_matches_truth(lake, sim, [spec.symbol])


def test_kraken_rows_without_ids_are_certified_by_the_venue_count(tmp_path: Path,
                                                                  make_sim: SimFactory) -> None:
    legacy = next(p for p in simulator_class("kraken").test_products if p.legacy_ids)
    spec = replace(legacy, trades_per_s=0.05, history=20_000)
    sim = make_sim(exchange="kraken", products=[spec], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    ingest(lake, sim, [spec.symbol], since_us=EPOCH_2020_US)
    transform(lake)
    pipeline.certify(settings(lake, sim))
    rows = _certificates(lake)
    assert rows and {r["status"] for r in rows.values()} == {"certified"}
    for row in rows.values():
        assert row["expected"] is None  # no id sequence: the venue's daily count is the evidence
        cross = json.loads(row["cross_check"])
        assert (cross["source"], cross["result"]) == ("OHLC 1d", "agrees")
        assert cross["figures"] == ["trades", "volume"]
    engine = pipeline.query_engine(settings(lake, sim))  # certified days' rows are what the view serves
    certified = engine.sql("SELECT count(*) AS n FROM certified_trades").to_pylist()[0]["n"]
    engine.close()
    assert certified == sum(r["trades"] for r in rows.values())
