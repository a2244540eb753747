"""``make demo``: the whole pipeline on embedded defaults, offline, in about a minute.

Starts the exchange simulator in the background, writes a seed of three products, ingests
them into ``./lake`` through the real CLI (rate-limited like the real exchange),
transforms them into the unified Delta table, runs example queries and the data-quality
checks, and stops the simulator it started. The lake is recreated on every run, but only
if the demo created it: anything else at that path is left alone.
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


def main() -> None:
    lake = Path(os.environ.get("DEMO_LAKE", "lake")).absolute()
    history_scale = os.environ.get("DEMO_HISTORY_SCALE", "2.5")
    _fresh_lake(lake)
    simulator = subprocess.Popen(
        [sys.executable, "-m", "schemahub", "simulate", "--port", "0", "--history-scale", history_scale],
        stdout=subprocess.PIPE, text=True)
    try:
        assert simulator.stdout is not None
        line = simulator.stdout.readline().strip()  # "simulator listening on http://..."
        if not line.startswith("simulator listening on "):
            sys.exit(f"the simulator did not start: {line!r}")
        url = line.rsplit(" ", 1)[1]
        print(f"exchange simulator (Coinbase wire format, 10 req/s per IP) at {url}", flush=True)
        env = {**os.environ, "SCHEMAHUB_COINBASE_URL": url, "SCHEMAHUB_LAKE": str(lake)}
        env.pop("SCHEMAHUB_LOG_FORMAT", None)
        _cli("update-seed", "--exchange", "coinbase", "--filter", "^(BTC|ETH|SOL)-USD$", env=env)
        _cli("ingest", "--exchange", "coinbase", env=env)
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
    _cli("transform", env=env)
    day = subprocess.run(
        [sys.executable, "-m", "schemahub", "query", "--format", "csv",
         "SELECT max(trade_date) AS day FROM trades"], env=env, check=True, capture_output=True, text=True,
    ).stdout.splitlines()[1]
    _cli("query", "SELECT exchange, symbol, count(*) AS trades, min(trade_ts) AS first, "
                  "max(trade_ts) AS last, round(sum(price * quantity)) AS notional "
                  "FROM trades GROUP BY ALL ORDER BY ALL", env=env)
    bars = Path("sql/ohlcv_1m.sql").read_text().strip().rstrip(";")
    last_bars = f"SELECT * FROM ({bars}) ORDER BY minute_utc DESC LIMIT 10"  # noqa: S608 - our own file
    _cli("query", last_bars, "--param", "symbol=BTC-USD",
         "--param", f"day={day}", env=env, shown="query --file sql/ohlcv_1m.sql ... (last 10 bars)")
    _cli("query", "--file", "sql/daily_volume.sql", env=env)
    _cli("check", "--freshness", "1h", env=env)
    print(f"\nraw lake: {lake}/raw (gzip JSONL, one file per 1000-id chunk)")
    print(f"unified table: {lake}/table/trades (Delta Lake; try `schemahub query \"SELECT ...\"`)")


if __name__ == "__main__":
    main()
