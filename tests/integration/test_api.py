"""The Python API against ground truth computed here from the simulators' trades.

Trades row by row (single venue and consolidated, with time windows); every bar kind bar by
bar (OHLC exact, volumes to 1e-12, counts exact) - on a local lake and on S3; partition
pruning proven by the files DuckDB reads; a pinned version that stays put while the table
moves; the stages returning their reports without printing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

import schemahub
from schemahub.api import Lake
from schemahub.errors import ConfigError
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.server import Faults, ManualClock, Simulator
from tests.conftest import SimFactory
from tests.helpers import EPOCH_2020_US, expected_rows, ingest, sim_env, transform
from tests.lakes import LakeRef

SYMBOL = "BTC-USDT"
VENUES = ("coinbase", "binance")


def _spec(exchange: str) -> Any:
    """BTC-USDT on both venues: about 2.5 days of history, several partitions each."""
    spec = next(p for p in simulator_class(exchange).test_products if p.symbol == SYMBOL)
    return replace(spec, trades_per_s=0.02, history=4_000)


def _lake(lake: LakeRef, sims: dict[str, Simulator]) -> Lake:
    for sim in sims.values():
        ingest(lake, sim, [SYMBOL], since_us=EPOCH_2020_US)
    transform(lake)
    env = dict(lake.env)
    for sim in sims.values():
        env.update(sim_env(sim))
    return schemahub.open_lake(lake.url, env=env)


def _truth(lake: LakeRef, sims: dict[str, Simulator]) -> list[dict[str, Any]]:
    """Both venues' trades in unified form, in the API's order: time, venue, id."""
    rows = [r for name in VENUES for r in expected_rows(lake, sims[name], [SYMBOL])]
    return sorted(rows, key=lambda r: (r["trade_ts"], r["exchange"], int(r["trade_id"])))


def _bars(rows: list[dict[str, Any]], kind: str, size: float | None = None,
          width: timedelta | None = None) -> list[dict[str, Any]]:
    """Bars computed in plain Python, exact decimals for the thresholds."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    cumulative, threshold = Decimal(0), Decimal(str(size)) if size else Decimal(1)
    for row in rows:
        qty, px = Decimal(repr(row["quantity"])), Decimal(repr(row["price"]))
        measure = {"tick": Decimal(1), "volume": qty, "dollar": qty * px}.get(kind, Decimal(0))
        if kind == "time":
            assert width is not None
            us = int(row["trade_ts"].timestamp() * 1_000_000)
            step = int(width.total_seconds() * 1_000_000)
            key: Any = datetime.fromtimestamp(us // step * step / 1e6, UTC)
        else:
            key = int(cumulative // threshold)  # the bar this trade's measure starts in
        cumulative += measure
        groups[key].append(row)
    out = []
    for key in sorted(groups):
        trades = groups[key]
        sizes = [Decimal(repr(t["quantity"])) for t in trades]
        paired = list(zip(sizes, trades, strict=True))
        notional = sum((q * Decimal(repr(t["price"])) for q, t in paired), Decimal(0))
        out.append({
            "bar": key, "first_trade": trades[0]["trade_ts"], "last_trade": trades[-1]["trade_ts"],
            "open": trades[0]["price"], "high": max(t["price"] for t in trades),
            "low": min(t["price"] for t in trades), "close": trades[-1]["price"],
            "volume": float(sum(sizes)), "notional": float(notional), "vwap": float(notional / sum(sizes)),
            "trades": len(trades),
            "buy_volume": float(sum((q for q, t in paired if t["side"] == "buy"), Decimal(0))),
            "sell_volume": float(sum((q for q, t in paired if t["side"] == "sell"), Decimal(0))),
        })
    return out


def _same_bars(got: pa.Table, want: list[dict[str, Any]]) -> None:
    rows = got.to_pylist()
    assert len(rows) == len(want)
    for mine, theirs in zip(rows, want, strict=True):
        for column in ("bar", "first_trade", "last_trade", "open", "high", "low", "close", "trades"):
            assert mine[column] == theirs[column], (column, mine, theirs)
        for column in ("volume", "notional", "vwap", "buy_volume", "sell_volume"):
            assert mine[column] == pytest.approx(theirs[column], rel=1e-12, abs=1e-12), (column, mine, theirs)


def _sims(make_sim: SimFactory) -> dict[str, Simulator]:
    return {name: make_sim(exchange=name, products=[_spec(name)], faults=Faults(rate_limit=False))
            for name in VENUES}


def test_trades_and_every_bar_kind_equal_the_truth(lake: LakeRef, make_sim: SimFactory) -> None:
    sims = _sims(make_sim)
    api = _lake(lake, sims)
    truth = _truth(lake, sims)
    assert api.trades(SYMBOL).to_arrow().to_pylist() == truth  # consolidated, every column
    coinbase = [r for r in truth if r["exchange"] == "coinbase"]
    assert api.trades(SYMBOL, exchange="coinbase").to_arrow().to_pylist() == coinbase
    start, end = truth[len(truth) // 3]["trade_ts"], truth[2 * len(truth) // 3]["trade_ts"]
    window = api.trades(SYMBOL, start=start, end=end)
    assert window.to_arrow().to_pylist() == [r for r in truth if start <= r["trade_ts"] < end]
    assert window.count() == sum(1 for r in truth if start <= r["trade_ts"] < end)
    frame = window.to_polars()  # on a local lake polars reads the pinned files itself: the same rows
    assert frame.to_dicts() == [r for r in truth if start <= r["trade_ts"] < end]
    assert api.trades(SYMBOL).to_polars().to_dicts() == truth
    unordered = api.trades(SYMBOL, exchange=["binance"], ordered=False).to_polars().to_dicts()
    binance = [r for r in truth if r["exchange"] == "binance"]
    assert sorted(unordered, key=lambda r: int(r["trade_id"])) == binance
    assert window.to_pandas()["price"].tolist() == frame["price"].to_list()

    _same_bars(api.bars(SYMBOL, "1m", exchange="coinbase").to_arrow(),
               _bars(coinbase, "time", width=timedelta(minutes=1)))
    _same_bars(api.bars(SYMBOL, "4h").to_arrow(), _bars(truth, "time", width=timedelta(hours=4)))
    for kind, size in (("tick", 37), ("volume", 0.5), ("dollar", 25_000.0)):
        _same_bars(api.bars(SYMBOL, kind=kind, size=size).to_arrow(), _bars(truth, kind, size))  # type: ignore[arg-type]
        binance = [r for r in truth if r["exchange"] == "binance"]
        _same_bars(api.bars(SYMBOL, kind=kind, size=size, exchange="binance").to_arrow(),  # type: ignore[arg-type]
                   _bars(binance, kind, size))
    api.close()


def test_filters_prune_partitions_and_a_version_stays_pinned(tmp_path: Any, make_sim: SimFactory) -> None:
    sims = _sims(make_sim)
    lake = LakeRef(str(tmp_path / "lake"), {})
    api = _lake(lake, sims)
    adds = pa.table(api.engine.snapshot.get_add_actions(flatten=True)).to_pylist()  # type: ignore[union-attr]
    days = sorted({a["partition.trade_date"] for a in adds})
    day = days[1]
    partition = [a for a in adds
                 if a["partition.exchange"] == "coinbase" and a["partition.trade_date"] == day]
    one_day = api.trades(SYMBOL, exchange="coinbase", start=day, end=day + timedelta(days=1))
    profile = one_day.explain()
    line = next(line for line in profile.splitlines() if "Total Files Read" in line)
    read = int(line.split(":")[1].strip(" │"))
    assert read == len(partition) < len(adds), profile  # only that partition's files were opened
    assert one_day.count() == sum(a["num_records"] for a in partition)

    pinned, before = api.version, api.trades(SYMBOL).count()
    for sim in sims.values():
        assert isinstance(sim.clock, ManualClock)
        sim.clock.advance(3600)
        ingest(lake, sim, [SYMBOL], since_us=EPOCH_2020_US)
    report = api.transform()  # the stages return their reports
    assert report.table_version_after is not None and report.table_version_after > (pinned or 0)
    assert api.version == pinned and api.trades(SYMBOL).count() == before  # still the pinned version
    assert api.as_of(pinned or 0).trades(SYMBOL).count() == before
    assert api.refresh().trades(SYMBOL).count() > before
    assert api.sql("SELECT count(*) AS n FROM trades WHERE exchange = $e", {"e": "binance"}).to_arrow()[
        "n"][0].as_py() == api.trades(SYMBOL, exchange="binance").count()
    api.close()


def test_the_stages_return_reports_and_print_nothing(tmp_path: Any, make_sim: SimFactory,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    sim = make_sim(exchange="coinbase", products=[_spec("coinbase")], faults=Faults(rate_limit=False))
    with schemahub.open_lake(str(tmp_path / "lake"), env=sim_env(sim)) as api:
        [ingested] = api.ingest(["coinbase"], products=[SYMBOL], since="2020-01-01")
        assert ingested.ok and ingested.products[0].trades == 4_000
        assert api.transform().table_version_after is not None
        certified = api.certify()
        assert certified.computed == len(api.certificates()) > 0
        assert {r.name for r in api.check(freshness=timedelta(days=3650))} >= {"gaps", "certificates"}
        assert api.repair(dry_run=True).items == []
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    with pytest.raises(ConfigError, match="interval"):
        schemahub.open_lake(str(tmp_path / "lake")).bars(SYMBOL, "7 minutes")
