"""``make demo``: the whole pipeline on embedded defaults, offline, in about a minute.

Starts a simulator for each registered exchange in the background, writes a seed per
exchange, ingests all of them into ``./lake`` through the real CLI (each
rate-limited like the real exchange), extends the history of venues with a bulk archive
(Binance) three days back from their archive files, says where each product's history
came from, transforms them into the one unified Delta table,
runs example queries - BTC compared across exchanges minute by minute - and the
data-quality checks, writes the dashboard, and stops the simulators it started. The
lake is recreated on every run, but only if the demo created it: anything else at that
path is left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = ".schemahub-demo"


def _cli(*args: str, env: dict[str, str], shown: str | None = None) -> None:
    print(f"\n$ schemahub {shown or ' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "schemahub", *args], env=env, check=True)


def _fresh_lake(lake: Path) -> None:
    if lake.exists():
        if not (lake / MARKER).exists():
            sys.exit(f"{lake} exists and was not created by the demo; move it away or set DEMO_LAKE")
        shutil.rmtree(lake)
    lake.mkdir(parents=True)
    (lake / MARKER).write_text("created by `make demo`; the demo deletes and recreates this lake\n")


def _start_simulator(exchange: str, history_scale: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    simulator = subprocess.Popen(
        [sys.executable, "-m", "schemahub", "simulate", "--exchange", exchange, "--port", "0",
         "--history-scale", history_scale, *extra], stdout=subprocess.PIPE, text=True,
        stderr=subprocess.DEVNULL)  # (its "stopping" notice when the demo ends is noise here)
    assert simulator.stdout is not None
    line = simulator.stdout.readline().strip()  # "simulator listening on http://..."
    if not line.startswith("simulator listening on "):
        simulator.kill()
        sys.exit(f"the {exchange} simulator did not start ({line!r}); run `schemahub simulate --exchange "
                 f"{exchange}` to see why")
    return simulator, line.rsplit(" ", 1)[1]


def _provenance(lake: Path) -> None:
    """Where each product's history came from: archive files, REST pages."""
    from schemahub.infra.storage import LocalStorage
    from schemahub.raw import files
    from schemahub.raw.layout import parse_key

    storage = LocalStorage(lake)
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for info in storage.list("raw/"):
        key = parse_key(info.key)
        if key is None:
            continue
        header = files.read_header(storage.read(info.key) or b"", info.key)
        source = "archive" if key.archive else "REST"
        tally = counts.setdefault((key.exchange, key.symbol), {"archive": 0, "REST": 0})
        tally[source] += header.trade_count
    print("\nwhere each product's history came from:")
    for (exchange, symbol), tally in sorted(counts.items()):
        print(f"  {exchange:<9} {symbol:<9} {tally['archive']:>9,} trades from archive files, "
              f"{tally['REST']:>9,} from REST")


def _query(sql: str, env: dict[str, str]) -> list[str]:
    return subprocess.run([sys.executable, "-m", "schemahub", "query", "--format", "csv", sql], env=env,
                          check=True, capture_output=True, text=True).stdout.splitlines()


def main() -> None:
    from schemahub.sources.registry import list_exchanges, spec

    lake = Path(os.environ.get("DEMO_LAKE", "lake")).absolute()
    _fresh_lake(lake)
    env = {**os.environ, "SCHEMAHUB_LAKE": str(lake)}
    simulators = []
    try:
        # Each venue's history is sized (its spec's demo settings) so that its ingest takes
        # about half a minute at its own documented rate limit.
        archived = []
        for exchange in list_exchanges():
            demo = spec(exchange).demo
            days = [] if demo.history_days is None else ["--history-days", str(demo.history_days)]
            simulator, url = _start_simulator(exchange, str(demo.history_scale), *days)
            simulators.append(simulator)
            env[f"SCHEMAHUB_{exchange.upper()}_URL"] = url
            if spec(exchange).archive is not None:  # the simulator serves the archive host too
                env[f"SCHEMAHUB_{exchange.upper()}_ARCHIVE_URL"] = url
                archived.append(exchange)
            print(f"{exchange} simulator (its wire format and public rate limit) at {url}", flush=True)
        for exchange in list_exchanges():
            _cli("update-seed", "--exchange", exchange, "--filter", spec(exchange).demo.seed_filter, env=env)
        _cli("ingest", "--exchange", "all", env=env)
        if archived:  # three days back: whole days from the bulk archive, the seams from REST
            _cli("ingest", "--exchange", ",".join(archived), "--since", "3d", env=env)
        _provenance(lake)
        # the simulators stay up: certify cross-checks each day with the venues' own aggregates
        _cli("transform", env=env)
        _cli("query", "SELECT exchange, symbol, count(*) AS trades, min(trade_ts) AS first, "
                      "max(trade_ts) AS last, round(sum(price * quantity)) AS notional "
                      "FROM trades GROUP BY ALL ORDER BY ALL", env=env)
        _cli("query", "--file", "sql/btc_by_exchange_1m.sql", "--param", "minutes=5", env=env)
        day = _query("SELECT max(trade_date) AS day FROM trades", env)[1]
        bars = Path("sql/ohlcv_1m.sql").read_text().strip().rstrip(";")
        last_bars = f"SELECT * FROM ({bars}) ORDER BY minute_utc DESC LIMIT 6"  # noqa: S608 - our own file
        _cli("query", last_bars, "--param", "symbol=BTC-USD",
             "--param", f"day={day}", env=env, shown="query --file sql/ohlcv_1m.sql ... (last bars)")
        _cli("query", "--file", "sql/daily_volume.sql", env=env)
        _cli("certify", env=env)
        _cli("query", "SELECT exchange, symbol, status, cross_check ->> '$.result' AS cross_check, "
                      "count(*) AS closed_days, sum(trades) AS trades FROM certificates "
                      "GROUP BY ALL ORDER BY ALL", env=env)
        _cli("check", "--freshness", "1h", env=env)
    finally:
        for simulator in simulators:
            simulator.terminate()
            simulator.wait(timeout=30)
    board = lake.parent / "dashboard.html"
    _cli("dashboard", "--output", str(board), env=env)
    print(f"\nraw lake: {lake}/raw (gzip JSONL, one file per chunk of ids or page run)")
    print(f"unified table: {lake}/table/trades (Delta Lake; try `schemahub query \"SELECT ...\"`)")
    print("run history: `schemahub query \"SELECT * FROM runs\"`; live: `schemahub serve --metrics`")
    print(f"dashboard: {board} (open it in a browser; no network needed)")


if __name__ == "__main__":
    main()
