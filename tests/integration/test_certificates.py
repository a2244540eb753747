"""Completeness certificates against the simulator's ground truth, computed independently here.

Each closed day's count, id span, the ids the exchange skipped, the status and the content
hash (md5 of the canonical rows) are recomputed in plain Python from the simulated trades
and compared with the certificate; the same on a local lake and on S3; unchanged by
compaction; a hand-edited row makes `check` fail on that day.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemahub import pipeline
from schemahub.quality.certificates import Certificates
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.market import Trade
from schemahub.simulator.server import Faults, Simulator
from tests.conftest import SimFactory
from tests.helpers import (
    EPOCH_2020_US,
    cli_env,
    delta_table,
    ingest,
    raw_files,
    run_cli,
    settings,
    transform,
)
from tests.lakes import LakeLike, LakeRef, as_lake

SYMBOL = "BTC-USD"
# about 4.6 days before the simulator's clock (2026-11-20 12:00 UTC), 1 id in 500 skipped
SPEC = replace(simulator_class("coinbase").test_products[0], trades_per_s=0.05, history=20_000,
               gap_rate=0.002)


def _line(trade: Trade) -> str:
    price, size = float(trade.price), float(trade.size)
    return f"{trade.trade_id}|trade|{trade.taker_side}|{price:.17g}|{size:.17g}|{trade.time_us}"


def _truth(sim: Simulator) -> dict[date, dict[str, Any]]:
    """Per UTC day: what its certificate must say, from the simulated trades alone."""
    market = sim.market(SYMBOL)
    trades = market.trades(0, market.visible(sim.now_us()))
    skipped = set(market.skipped_ids(market.visible(sim.now_us())))
    days: dict[date, list[Trade]] = defaultdict(list)
    for trade in trades:
        days[datetime.fromtimestamp(trade.time_us / 1e6, UTC).date()].append(trade)
    out = {}
    for day, rows in days.items():
        first, last = rows[0].trade_id, rows[-1].trade_id
        gaps = sum(1 for i in range(first, last + 1) if i in skipped)
        out[day] = {"trades": len(rows), "first_trade_id": str(first), "last_trade_id": str(last),
                    "expected": last - first + 1 - gaps, "exchange_gap_ids": gaps, "unexplained_ids": 0,
                    "status": "certified_with_exchange_gaps" if gaps else "certified",
                    "content_hash": hashlib.md5("\n".join(map(_line, rows)).encode()).hexdigest()}
    return out


def _certify(lake: LakeLike, sim: Simulator) -> Any:
    return pipeline.certify(settings(lake, sim))


def _certificates(lake: LakeLike) -> list[dict[str, Any]]:
    return Certificates(as_lake(lake).storage()).rows()


def _sim(make_sim: SimFactory) -> Simulator:
    return make_sim(products=[SPEC], faults=Faults(rate_limit=False))


def test_certificates_equal_the_truth_and_stay_put(lake: LakeRef, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    ingest(lake, sim, [SYMBOL], since_us=EPOCH_2020_US)
    transform(lake)
    first = _certify(lake, sim)
    truth = _truth(sim)
    rows = _certificates(lake)
    # closed days: every whole day before the clock's (2026-11-20); the history's first day counts
    # (it is covered from 2020 on, so no trade of it can be missing at its start)
    assert [r["day"] for r in rows] == sorted(d for d in truth if d < date(2026, 11, 20))
    assert first.computed == len(rows) and first.unchanged == 0
    assert any(r["status"] == "certified_with_exchange_gaps" for r in rows)  # the simulator skips ids
    for row in rows:
        want = truth[row["day"]]
        assert {k: row[k] for k in want} == want, row["day"]
        assert row["table_version"] == first.table_version
        cross = json.loads(row["cross_check"])  # Coinbase's 1-minute candles: volume per minute
        assert (cross["source"], cross["result"], cross["differences"]) == ("candles 1m", "agrees", 0)
        evidence = json.loads(row["evidence"])["exchange_gaps"]
        assert sum(g["last_id"] - g["first_id"] + 1 for g in evidence) == row["exchange_gap_ids"]

    again = _certify(lake, sim)  # nothing changed: nothing is computed
    assert (again.computed, again.unchanged) == (0, len(rows))
    compacted = run_cli("compact", "--lake", lake.url, env=cli_env(None, lake))
    assert compacted.returncode == 0, compacted.stderr
    after = _certify(lake, sim)  # compaction rewrote files, not rows: still nothing to compute
    assert after.computed == 0 and _certificates(lake) == rows
    checked = run_cli("check", "--deep", "--json", "--freshness", "3650d", "--lake", lake.url,
                      env=cli_env(None, lake))
    assert checked.returncode == 0, checked.stdout
    result = next(c for c in orjson.loads(checked.stdout) if c["name"] == "certificates")
    assert result["status"] == "ok" and "every certified day" in result["summary"]


def test_a_hand_edited_row_fails_check_on_its_day(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    lake = tmp_path / "lake"
    ingest(lake, sim, [SYMBOL], since_us=EPOCH_2020_US)
    transform(lake)
    _certify(lake, sim)
    victim = _certificates(lake)[1]
    delta_table(lake).update(updates={"price": "price + 1"},
                             predicate=f"trade_id = '{victim['first_trade_id']}'")
    checked = run_cli("check", "--json", "--deep", "--freshness", "3650d", "--lake", str(lake),
                      env=cli_env(None))
    assert checked.returncode == 1
    result = next(c for c in orjson.loads(checked.stdout) if c["name"] == "certificates")
    assert result["status"] == "fail"
    [bad] = result["details"]
    assert (bad["symbol"], bad["day"]) == (SYMBOL, victim["day"].isoformat())
    assert bad["certified"]["content_hash"] == victim["content_hash"] != bad["now"]["content_hash"]
    assert bad["now"]["trades"] == victim["trades"]  # the count alone would not have told


def test_missing_trades_make_a_day_incomplete(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = _sim(make_sim)
    lake = tmp_path / "lake"
    ingest(lake, sim, [SYMBOL], since_us=EPOCH_2020_US)
    # one raw file of a middle day cut in half before the transform reads it: quarantined
    key, _, records = next(f for f in raw_files(lake, SYMBOL)
                           if f[1].first_trade_time.date() == date(2026, 11, 17))
    storage = as_lake(lake).storage()
    storage.write(key, (storage.read(key) or b"")[:100])
    run_cli("transform", "--lake", str(lake), env=cli_env(None))
    report = _certify(lake, sim)
    day = {r["day"]: r for r in _certificates(lake)}[date(2026, 11, 17)]
    assert day["status"] == "incomplete" and day["unexplained_ids"] >= len(records)
    assert report.by_status.get("incomplete") == 1


def test_a_venue_without_an_id_sequence_is_unverifiable(tmp_path: Path, make_sim: SimFactory) -> None:
    spec = replace(simulator_class("bitfinex").test_products[1], trades_per_s=0.05, history=10_000)
    sim = make_sim(exchange="bitfinex", products=[spec], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    ingest(lake, sim, [spec.symbol], since_us=EPOCH_2020_US)
    transform(lake)
    _certify(lake, sim)
    rows = _certificates(lake)
    assert rows and {r["status"] for r in rows} == {"unverifiable"}
    assert all(r["expected"] is None for r in rows)


@pytest.mark.parametrize("fmt", ["jsonl"])
def test_certify_exports_json_lines(tmp_path: Path, make_sim: SimFactory, fmt: str) -> None:
    sim = _sim(make_sim)
    lake = tmp_path / "lake"
    ingest(lake, sim, [SYMBOL], since_us=EPOCH_2020_US)
    transform(lake)
    done = run_cli("certify", "--export", str(tmp_path / "out"), "--lake", str(lake), env=cli_env(sim))
    assert done.returncode == 0, done.stderr
    assert "day(s) computed" in done.stdout
    text = (tmp_path / "out" / f"certificates.{fmt}").read_text()
    exported = [orjson.loads(line) for line in text.splitlines()]
    assert [e["day"] for e in exported] == [r["day"].isoformat() for r in _certificates(lake)]
    queried = run_cli("query", "SELECT count(*) AS n FROM certified_trades", "--format", "json",
                      "--lake", str(lake), env=cli_env(None))
    assert queried.returncode == 0, queried.stderr
    certified = sum(e["trades"] for e in exported if e["status"].startswith("certified"))
    assert orjson.loads(queried.stdout.splitlines()[0])["n"] == certified


def test_okx_days_are_cross_checked_with_its_candles(tmp_path: Path, make_sim: SimFactory) -> None:
    spec = replace(simulator_class("okx").test_products[0], trades_per_s=0.05, history=12_000, gap_rate=0.0)
    sim = make_sim(exchange="okx", products=[spec], faults=Faults(rate_limit=False))
    lake = tmp_path / "lake"
    ingest(lake, sim, [spec.symbol], since_us=EPOCH_2020_US)
    transform(lake)
    _certify(lake, sim)
    rows = _certificates(lake)
    assert rows and {r["status"] for r in rows} == {"certified"}
    for row in rows:
        cross = json.loads(row["cross_check"])
        assert (cross["source"], cross["result"], cross["figures"]) == ("candles 1m", "agrees", ["volume"])
        assert cross["intervals"] > 100  # minutes with trades, paged 100 candles a request
