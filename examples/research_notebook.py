"""A research session with SchemaHub's Python API, as notebook cells (``# %%``).

Run it against any lake (``make demo`` builds one in ./lake):

    .venv/bin/python examples/research_notebook.py [LAKE] [OUTPUT_DIR]

It loads a day of BTC-USDT, builds 1-minute and volume bars, compares BTC across venues
minute by minute, writes an interactive chart to OUTPUT_DIR/btc_across_venues.html and
prints a JSON summary on its last line. Needs the ``frames`` extra (polars).
"""

# %% Open the lake: one pinned table version for every query below
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

import schemahub

lake = schemahub.open_lake(sys.argv[1] if len(sys.argv) > 1 else "./lake")
out = Path(sys.argv[2] if len(sys.argv) > 2 else ".")
out.mkdir(parents=True, exist_ok=True)
SYMBOL = "BTC-USDT"
print(lake)

# %% Which venues trade it, and the last whole day they all have
venues = lake.sql("SELECT exchange, count(*) AS trades, max(trade_date) AS last_day FROM trades "
                  "WHERE symbol = $symbol GROUP BY ALL ORDER BY exchange", {"symbol": SYMBOL}).to_polars()
print(venues)
day: date = venues["last_day"].min()  # type: ignore[assignment]

# %% One day of trades, every venue, as a polars frame (filters pushed down to the files)
trades = lake.trades(SYMBOL, start=day, end=day + timedelta(days=1)).to_polars()
print(trades.group_by("exchange").agg(pl.len().alias("trades"), pl.col("quantity").sum().alias("volume")))

# %% 1-minute bars per venue, and consolidated across venues
per_venue = {name: lake.bars(SYMBOL, "1m", exchange=name).to_polars() for name in venues["exchange"]}
consolidated = lake.bars(SYMBOL, "1m").to_polars()

# %% Volume bars: a bar per 5 BTC traded anywhere
volume_bars = lake.bars(SYMBOL, kind="volume", size=5.0).to_polars()
print(volume_bars.select("bar", "first_trade", "last_trade", "open", "close", "volume", "trades").head())

# %% BTC across venues: each venue's 1-minute close against the consolidated VWAP
closes = consolidated.select("bar", pl.col("vwap").alias("consolidated_vwap"))
for name, bars in per_venue.items():
    closes = closes.join(bars.select("bar", pl.col("close").alias(name)), on="bar", how="left")
spread_bps = {name: float(((closes[name] / closes["consolidated_vwap"] - 1) * 10_000).abs().mean() or 0.0)
              for name in per_venue}

figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
for name, bars in per_venue.items():
    figure.add_trace(go.Scatter(x=bars["bar"].to_list(), y=bars["close"].to_list(), name=f"{name} close",
                                mode="lines"), row=1, col=1)
figure.add_trace(go.Scatter(x=consolidated["bar"].to_list(), y=consolidated["vwap"].to_list(),
                            name="consolidated VWAP", line={"dash": "dot", "color": "black"}), row=1, col=1)
figure.add_trace(go.Bar(x=consolidated["bar"].to_list(), y=consolidated["volume"].to_list(),
                        name="volume (all venues)"), row=2, col=1)
figure.update_layout(title=f"{SYMBOL} across venues, 1-minute bars", template="plotly_white", height=640)
chart = out / "btc_across_venues.html"
figure.write_html(chart, include_plotlyjs=True)
print(f"chart: {chart}")

# %% A summary a test (or a scheduler) can read
print(json.dumps({
    "version": lake.version, "day": str(day), "venues": list(per_venue),
    "day_trades": trades.height, "minute_bars": consolidated.height, "volume_bars": volume_bars.height,
    "mean_abs_spread_bps": {k: round(v, 3) for k, v in spread_bps.items()}, "chart": str(chart),
}))
