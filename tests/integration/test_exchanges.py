"""What is particular to one exchange, and all of them in one table, end to end.

* Binance's aggTrades endpoint: aggregate ids, flagged in every row, never mixed with trade ids.
* Kraken rows without a trade id: deterministic derived ids, flagged.
* ``--exchange all`` from the command line: three simulators, one table, row by row.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemahub.ingest.report import Status
from schemahub.simulator.binance import BinanceSim
from schemahub.simulator.catalog import tradable
from schemahub.simulator.market import ProductSpec
from schemahub.simulator.server import Simulator
from schemahub.sources.registry import list_exchanges, source_class
from schemahub.timeutil import from_us
from tests.conftest import SimFactory
from tests.helpers import (
    EPOCH_2020_US,
    PRODUCTS_FOR,
    TRADED,
    assert_table_matches_truth,
    checkpoint,
    cli_env,
    ingest,
    raw_files,
    run_cli,
    table_rows,
    trade_id,
    transform,
)


def _fetched(lake: Path, symbol: str, exchange: str) -> dict[int, datetime]:
    """When each raw line was first fetched, by its id."""
    seen: dict[int, datetime] = {}
    for _, header, records in raw_files(lake, symbol, exchange):
        for record in records:
            seen[trade_id(record)] = min(header.fetched_at, seen.get(trade_id(record), header.fetched_at))
    return seen


def _aggregate_truth(sim: Simulator, symbol: str) -> list[dict[str, Any]]:
    api = sim.api
    assert isinstance(api, BinanceSim)
    return [orjson.loads(line) for line in api.aggregate_truth(symbol, sim.now_us())]


def test_binance_aggregate_trades_are_flagged_and_exact(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = make_sim(exchange="binance")
    symbols = TRADED["binance"]
    report = ingest(tmp_path, sim, symbols, SCHEMAHUB_BINANCE_ENDPOINT="aggTrades")
    assert report.ok, report.to_dict()
    sim.clock.advance(600)  # type: ignore[attr-defined]
    assert ingest(tmp_path, sim, symbols, SCHEMAHUB_BINANCE_ENDPOINT="aggTrades").ok  # and incrementally
    transform(tmp_path)

    want = []
    for symbol in sorted(symbols):
        cp = checkpoint(tmp_path, symbol, "binance")
        assert cp.endpoint == "aggTrades"
        truth = [a for a in _aggregate_truth(sim, symbol) if cp.start_after_id < a["a"] <= cp.last_trade_id]
        raw = sorted((r for _, header, records in raw_files(tmp_path, symbol, "binance") for r in records),
                     key=trade_id)
        assert [orjson.dumps(r) for r in raw] == [orjson.dumps(a) for a in truth]  # verbatim, µs times
        assert all(h.endpoint == "aggTrades" for _, h, _ in raw_files(tmp_path, symbol, "binance"))
        fetched = _fetched(tmp_path, symbol, "binance")
        for a in truth:
            moment = from_us(a["T"])
            want.append({
                "exchange": "binance", "symbol": symbol, "trade_id": str(a["a"]), "id_kind": "aggregate",
                "side": "sell" if a["m"] else "buy",  # m: the buyer made -> the taker sold
                "price": float(a["p"]), "quantity": float(a["q"]), "trade_ts": moment,
                "ingest_ts": fetched[a["a"]], "trade_date": moment.date()})
    assert len(want) > 1000 and any(a["f"] != a["l"] for s in symbols for a in _aggregate_truth(sim, s))
    assert table_rows(tmp_path, exchange="binance") == want


def test_switching_endpoints_is_refused_before_anything_is_written(tmp_path: Path,
                                                                   make_sim: SimFactory) -> None:
    sim = make_sim(exchange="binance")
    assert ingest(tmp_path, sim, ["ETH-BTC"]).ok  # historicalTrades: trade ids
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()
                    and "locks" not in p.parts)
    refused = ingest(tmp_path, sim, ["ETH-BTC"], SCHEMAHUB_BINANCE_ENDPOINT="aggTrades")
    [product] = refused.products
    assert product.status is Status.FAILED and product.config_error and refused.exit_code == 2
    assert product.error is not None
    assert "ETH-BTC was ingested from historicalTrades, not aggTrades" in product.error
    result = run_cli("ingest", "--exchange", "binance", "--products", "ETH-BTC", "--lake", str(tmp_path),
                     env=cli_env(sim, SCHEMAHUB_BINANCE_ENDPOINT="aggTrades"))
    assert result.returncode == 2
    assert "SCHEMAHUB_BINANCE_ENDPOINT=historicalTrades" in result.stderr
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()
                   and "locks" not in p.parts and "runs" not in p.parts)  # only run records were added
    assert after == [entry for entry in before if "runs" not in entry[0].parts]


def _kraken_rows(lake: Path, sim: Simulator, symbol: str) -> list[dict[str, Any]]:
    """The table's rows for ``symbol`` against the simulator's trades, in stream order."""
    rows = [r for r in table_rows(lake, exchange="kraken") if r["symbol"] == symbol]
    market = sim.market(symbol)
    trades = market.trades(0, market.visible(sim.now_us()))
    assert len(rows) == len(trades), f"{len(rows)} rows, ground truth has {len(trades)}"
    for row, trade in zip(rows, trades, strict=True):
        moment = from_us(trade.time_us)
        assert {k: v for k, v in row.items() if k not in ("trade_id", "ingest_ts")} == {
            "exchange": "kraken", "symbol": symbol, "id_kind": "derived", "side": trade.taker_side,
            "price": float(trade.price), "quantity": float(trade.size), "trade_ts": moment,
            "trade_date": moment.date()}
    return rows


def test_kraken_rows_without_ids_get_deterministic_flagged_ids(tmp_path: Path, make_sim: SimFactory) -> None:
    sim = make_sim(exchange="kraken")
    assert all(len(row) == 6 for row in sim.ground_truth("LTC-USD"))  # the old format: no trade id
    first, second = tmp_path / "a", tmp_path / "b"
    for lake in (first, second):
        report = ingest(lake, sim, ["LTC-USD"])
        assert report.ok, report.to_dict()
        records = [r for _, _, rs in raw_files(lake, "LTC-USD", "kraken") for r in rs]
        assert [r["trade"] for r in records] == sim.ground_truth("LTC-USD")  # verbatim, in order
        assert {r["id_kind"] for r in records} == {"derived"}
        transform(lake)
    rows = _kraken_rows(first, sim, "LTC-USD")
    # the same trades fetched from the same cursor get the same ids, in stream order
    assert [r["trade_id"] for r in rows] == [r["trade_id"] for r in _kraken_rows(second, sim, "LTC-USD")]
    ids = [int(r["trade_id"]) for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # a derived id is the page's cursor (µs, x1000) plus the row's index in the page
    cursor_us = EPOCH_2020_US
    assert ids[:3] == [cursor_us * 1000, cursor_us * 1000 + 1, cursor_us * 1000 + 2]

    sim.clock.advance(3600)  # type: ignore[attr-defined]
    assert ingest(first, sim, ["LTC-USD"]).ok
    transform(first)
    grown = _kraken_rows(first, sim, "LTC-USD")
    assert grown[: len(rows)] == rows and len(grown) > len(rows)  # old ids kept, new rows appended once
    assert checkpoint(first, "LTC-USD", "kraken").cursor is not None

    result = run_cli("check", "--deep", "--json", "--freshness", "3650d", "--lake", str(first),
                     env=cli_env(None))
    assert result.returncode == 0, result.stdout
    checks = {c["name"]: c for c in orjson.loads(result.stdout)}
    # derived ids are positions: no gap count, but every row still equals its raw trade
    assert "derived ids" in checks["gaps"]["details"][0]["skipped"]
    assert checks["deep-reconciliation"]["details"][0]["raw_rows"] == len(grown)


def test_kraken_pages_whose_ids_start_mid_page_lose_no_trade(tmp_path: Path, make_sim: SimFactory) -> None:
    """Old rows come without ids (derived ids ~1e18), newer with real ones (~1e7): a page
    where ids start mid-page, and every page after it, must be ingested in full (ids of the
    two kinds are never compared), and a re-run adds nothing."""
    spec = ProductSpec("BTC-USD", 63_990.0, price_decimals=1, mean_size=0.02, trades_per_s=2.0, history=2_600,
                       first_id=80_000_001, native_id="XXBTZUSD", base_code="XBT", quote_code="USD",
                       gap_rate=0.0, legacy_below_id=80_001_500)
    sim = make_sim(exchange="kraken", products=[spec])
    truth = sim.ground_truth("BTC-USD")
    legacy = sum(1 for row in truth if len(row) == 6)
    assert 0 < legacy < len(truth) and legacy % 1000 != 0  # the switch falls inside a page
    report = ingest(tmp_path, sim, ["BTC-USD"])
    assert report.ok, report.to_dict()
    assert report.products[0].trades == len(truth)
    records = [r for _, _, rs in raw_files(tmp_path, "BTC-USD", "kraken") for r in rs]
    assert sorted((r["trade"] for r in records), key=lambda row: (row[2], row[6] if len(row) > 6 else 0)) \
        == truth
    assert [r["id_kind"] for r in records].count("derived") == legacy
    cp = checkpoint(tmp_path, "BTC-USD", "kraken")
    assert cp.last_trade_id == 80_000_000 + len(truth) and cp.derived_through_id is not None
    transform(tmp_path)
    rows = [r for r in table_rows(tmp_path, exchange="kraken")]
    assert len(rows) == len(truth)
    assert {r["id_kind"] for r in rows} == {"derived", "trade"}
    real = sorted(int(r["trade_id"]) for r in rows if r["id_kind"] == "trade")
    assert real == list(range(80_001_500, 80_000_001 + len(truth)))

    again = ingest(tmp_path, sim, ["BTC-USD"])  # nothing new: no trade is fetched twice
    assert again.ok and again.products[0].trades == 0
    sim.clock.advance(600)  # type: ignore[attr-defined]
    assert ingest(tmp_path, sim, ["BTC-USD"]).ok
    transform(tmp_path)
    grown = table_rows(tmp_path, exchange="kraken")
    assert len(grown) == len(sim.ground_truth("BTC-USD"))
    assert len({r["trade_id"] for r in grown}) == len(grown)


def test_all_exchanges_into_one_table_from_the_command_line(tmp_path: Path, make_sim: SimFactory) -> None:
    names = list_exchanges()
    sims = [make_sim(exchange=name) for name in names]
    env = cli_env(sims)
    lake = str(tmp_path / "lake")
    pattern = "^(BTC|ETH)-USDT?$"
    seeded = run_cli("update-seed", "--exchange", "all", "--filter", pattern, "--lake", lake, env=env)
    assert seeded.returncode == 0, seeded.stderr
    seeds = {name: sorted(p.symbol for p in tradable(PRODUCTS_FOR[name]) if re.match(pattern, p.symbol))
             for name in names}
    for name in names:
        assert f"wrote {len(seeds[name])} {name} products" in seeded.stdout
    ingested = run_cli("ingest", "--exchange", "all", "--since", "2020-01-01", "--rate", "1000",
                       "--json", "--lake", lake, env=env)
    assert ingested.returncode == 0, ingested.stderr
    reports = orjson.loads(ingested.stdout)
    assert reports["ok"] and [r["exchange"] for r in reports["reports"]] == names
    transformed = run_cli("transform", "--lake", lake, env=env)
    assert transformed.returncode == 0, transformed.stderr

    for sim in sims:
        assert_table_matches_truth(tmp_path / "lake", sim, seeds[sim.exchange])

    sql = ("SELECT exchange, count(*) AS trades, sum(quantity) AS volume FROM trades "
           "WHERE symbol = 'BTC-USDT' GROUP BY exchange ORDER BY exchange")
    queried = run_cli("query", sql, "--format", "json", "--lake", lake, env=env)
    assert queried.returncode == 0, queried.stderr
    got = [orjson.loads(line) for line in queried.stdout.splitlines()]  # JSON lines
    want = []
    for sim in sorted(sims, key=lambda s: s.exchange):
        cp = checkpoint(tmp_path / "lake", "BTC-USDT", sim.exchange)
        market = sim.market("BTC-USDT")
        trades = [t for t in market.trades(0, market.visible(sim.now_us()))
                  if cp.start_after_id < t.trade_id <= cp.last_trade_id]
        want.append({"exchange": sim.exchange, "trades": len(trades),
                     "volume": float(sum((Decimal(str(t.size)) for t in trades), Decimal(0)))})
    assert [(r["exchange"], r["trades"]) for r in got] == [(w["exchange"], w["trades"]) for w in want]
    for mine, theirs in zip(got, want, strict=True):
        assert mine["volume"] == pytest.approx(theirs["volume"], rel=1e-12)

    checked = run_cli("check", "--deep", "--json", "--freshness", "3650d", "--lake", lake, env=env)
    assert checked.returncode == 0, checked.stdout
    gaps = {(d["exchange"], d["symbol"]): d for d in
            next(c for c in orjson.loads(checked.stdout) if c["name"] == "gaps")["details"]}
    assert set(gaps) == {(ex, sym) for ex, symbols in seeds.items() for sym in symbols}
    counted = {key: d for key, d in gaps.items() if "skipped" not in d}
    assert all(d["rows"] == d["expected"] for d in counted.values())
    # venues whose ids are no per-product sequence are complete by time, not counted by id
    assert {ex for ex, _ in set(gaps) - set(counted)} == {n for n in names if not source_class(n).dense_ids}


def test_products_by_symbol_or_native_id_on_several_exchanges(tmp_path: Path, make_sim: SimFactory) -> None:
    sims = [make_sim(exchange="binance"), make_sim(exchange="kraken")]
    env = cli_env(sims)
    lake = tmp_path / "lake"
    # XBTUSDT is Kraken's native id of BTC-USDT; ETH-BTC is listed by Binance only
    result = run_cli("ingest", "--exchange", "binance,kraken", "--products", "XBTUSDT,ETH-BTC", "--since",
                     "2020-01-01", "--rate", "1000", "--json", "--lake", str(lake), env=env)
    assert result.returncode == 0, result.stderr
    reports = orjson.loads(result.stdout)["reports"]
    done = {(r["exchange"], p["symbol"]) for r in reports for p in r["products"]}
    assert done == {("kraken", "BTC-USDT"), ("binance", "ETH-BTC")}
    for sim, symbol in ((sims[0], "ETH-BTC"), (sims[1], "BTC-USDT")):
        assert checkpoint(lake, symbol, sim.exchange).last_trade_id == trade_id(sim.ground_truth(symbol)[-1])

    unknown = run_cli("ingest", "--exchange", "binance,kraken", "--products", "BTC-EUR", "--lake",
                      str(tmp_path / "other"), env=env)
    assert unknown.returncode == 2 and "no selected exchange lists BTC-EUR" in unknown.stderr
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").rglob("*.gz"))
