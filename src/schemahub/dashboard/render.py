"""The dashboard as one self-contained HTML file: Plotly charts, plotly.js inlined, no network.

Sections, top to bottom: headline numbers; pipeline operations over time (trades, duration
and throughput per run); API health per exchange (latency p50/p95, 429s, 5xx, breaker
trips); data completeness (trade-id coverage per product and day, the certificates' status
calendar, known vs unexplained gaps, freshness); storage (raw vs table bytes). Every chart
is a ``<div>`` with a stable id, so a browser test can find it and read its data.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from schemahub.dashboard.data import Dashboard

COMMAND_COLORS = {"ingest": "#2563eb", "repair": "#0891b2", "transform": "#16a34a", "compact": "#9333ea",
                  "certify": "#ca8a04", "check": "#ea580c"}
EXCHANGE_COLORS = ["#2563eb", "#f59e0b", "#7c3aed", "#059669", "#dc2626", "#0891b2"]
T = TypeVar("T")
_LAYOUT: dict[str, Any] = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
                           "font": {"family": "Inter, system-ui, sans-serif", "size": 12},
                           "legend": {"orientation": "h", "y": -0.15}}


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=220, **_LAYOUT,
                      xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "showarrow": False,
                                    "font": {"size": 14, "color": "#64748b"}}])
    return fig


def operations(board: Dashboard) -> go.Figure:
    runs = [r for r in board.runs if r.finished_at is not None]
    if not runs:
        return _empty("Pipeline operations", "no runs recorded yet")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("trades / rows per run", "duration (s)", "throughput (per s)"))
    for command in COMMAND_COLORS:
        mine = [r for r in runs if r.command == command]
        if not mine:
            continue
        x = [r.started_at for r in mine]
        text = [f"{r.run_id}<br>{r.status}" for r in mine]
        color = COMMAND_COLORS[command]
        fig.add_trace(go.Bar(x=x, y=[r.trades for r in mine], name=command, marker_color=color, text=text,
                             hovertemplate="%{text}<br>%{y:,} trades<extra>" + command + "</extra>",
                             legendgroup=command, textposition="none"), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[r.duration_s for r in mine], mode="markers+lines", name=command,
                                 marker_color=color, showlegend=False, legendgroup=command), row=2, col=1)
        rates = [r.trades / r.duration_s if r.duration_s else 0 for r in mine]
        fig.add_trace(go.Scatter(x=x, y=rates, mode="markers+lines", name=command, marker_color=color,
                                 showlegend=False, legendgroup=command), row=3, col=1)
    failed = [r for r in runs if r.status in ("failed", "interrupted")]
    if failed:
        fig.add_trace(go.Scatter(x=[r.started_at for r in failed], y=[r.trades for r in failed],
                                 mode="markers", name="failed",
                                 marker={"symbol": "x", "size": 12, "color": "#dc2626"},
                                 text=[r.error or r.status for r in failed], hovertemplate="%{text}"),
                      row=1, col=1)
    fig.update_layout(title="Pipeline operations", height=560, barmode="group", **_LAYOUT)
    return fig


def api_health(board: Dashboard) -> go.Figure:
    if not board.api:
        return _empty("API health", "no ingest runs recorded yet")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("request latency (ms)", "throttles, errors, trips"),
                        horizontal_spacing=0.08)
    by_exchange: dict[str, list[Any]] = defaultdict(list)
    for point in board.api:
        by_exchange[point.exchange].append(point)
    for n, (exchange, points) in enumerate(sorted(by_exchange.items())):
        color = EXCHANGE_COLORS[n % len(EXCHANGE_COLORS)]
        x = [p.at for p in points]
        for q, dash in (("p50", "solid"), ("p95", "dot")):
            fig.add_trace(go.Scatter(x=x, y=[getattr(p, f"{q}_ms") for p in points], name=f"{exchange} {q}",
                                     mode="lines+markers", line={"color": color, "dash": dash}), row=1, col=1)
    kinds = (("429s", "rate_limited"), ("5xx", "server_errors"), ("breaker trips", "breaker_trips"),
             ("bans (418)", "banned"))
    exchanges = sorted(by_exchange)
    for label, attr in kinds:
        totals = [sum(getattr(p, attr) for p in by_exchange[e]) for e in exchanges]
        fig.add_trace(go.Bar(x=exchanges, y=totals, name=label), row=1, col=2)
    fig.update_layout(title="API health", height=380, barmode="group", **_LAYOUT)
    return fig


@dataclass(frozen=True)
class _Grid:
    """A product x day heatmap's axes and cells: values and hover texts (None/"" where empty)."""

    products: list[str]
    days: list[str]
    z: list[list[Any]]
    text: list[list[str]]


def _grid(cells: dict[tuple[str, date], T], value: Callable[[T], Any], hover: Callable[[T], str]) -> _Grid:
    products = sorted({product for product, _ in cells})
    days = sorted({day for _, day in cells})
    z = [[None if (c := cells.get((p, d))) is None else value(c) for d in days] for p in products]
    text = [["" if (c := cells.get((p, d))) is None else hover(c) for d in days] for p in products]
    return _Grid(products, [d.isoformat() for d in days], z, text)


def completeness(board: Dashboard) -> go.Figure:
    if not board.coverage:
        return _empty("Data completeness", "no trades in the table yet")
    grid = _grid({(f"{c.exchange} {c.symbol}", c.day): c for c in board.coverage},
                 lambda c: round(c.coverage, 4),
                 lambda c: (f"{c.rows:,} trades of {c.span:,} ids<br>{c.known_gaps:,} skipped by the exchange"
                            f"<br>{c.unexplained:,} unexplained"))
    fig = go.Figure(go.Heatmap(
        z=grid.z, x=grid.days, y=grid.products, text=grid.text, zmin=min(99.0, *(
            v for row in grid.z for v in row if v is not None)), zmax=100.0,
        colorscale=[[0, "#dc2626"], [0.5, "#fbbf24"], [1, "#16a34a"]], colorbar={"title": "% of ids"},
        hovertemplate="%{y} %{x}<br>%{z:.3f}% of trade ids<br>%{text}<extra></extra>", xgap=2, ygap=2))
    fig.update_layout(title="Completeness: trade-id coverage per product and day", **_LAYOUT,
                      height=max(260, 60 + 34 * len(grid.products)), xaxis={"type": "category"})
    return fig


CERTIFICATE_STATUSES = ("incomplete", "unverifiable", "certified_with_exchange_gaps", "certified")
_STATUS_COLORS = ("#dc2626", "#94a3b8", "#84cc16", "#15803d")


def certificates(board: Dashboard) -> go.Figure:
    """A calendar of certificate status per product and day, the reasons on hover."""
    if not board.certificates:
        return _empty("Certificates", "no certificates yet (`schemahub certify`)")
    grid = _grid({(f"{c['exchange']} {c['symbol']}", c["day"]): c for c in board.certificates},
                 lambda c: CERTIFICATE_STATUSES.index(c["status"]), _reasons)
    n = len(CERTIFICATE_STATUSES)
    scale = [[edge, color] for i, color in enumerate(_STATUS_COLORS) for edge in (i / n, (i + 1) / n)]
    fig = go.Figure(go.Heatmap(
        z=grid.z, x=grid.days, y=grid.products, text=grid.text, zmin=-0.5, zmax=n - 0.5,
        colorscale=scale, xgap=2, ygap=2, hovertemplate="%{y} %{x}<br>%{text}<extra></extra>",
        colorbar={"tickvals": list(range(n)),
                  "ticktext": [s.replace("_", " ") for s in CERTIFICATE_STATUSES]}))
    fig.update_layout(title="Certificates: status per product and UTC day", **_LAYOUT,
                      height=max(260, 60 + 34 * len(grid.products)), xaxis={"type": "category"})
    return fig


def _reasons(cell: dict[str, Any]) -> str:
    """Why a day has its status, for the hover box."""
    expected = f" of {cell['expected']:,} expected" if cell["expected"] is not None else " (no id sequence)"
    lines = [f"<b>{cell['status'].replace('_', ' ')}</b>", f"{cell['trades']:,} trades{expected}"]
    if cell["exchange_gap_ids"]:
        lines.append(f"{cell['exchange_gap_ids']:,} ids skipped by the exchange (logged)")
    if cell["unexplained_ids"]:
        lines.append(f"{cell['unexplained_ids']:,} ids missing for no known reason")
    cross = json.loads(cell["cross_check"])
    if cross["result"] in ("agrees", "disagrees"):
        lines.append(f"{cross['source']}: {cross['result']}"
                     + (f" ({cross['differences']} difference(s))" if cross["differences"] else ""))
    elif cross["result"] == "unavailable":
        lines.append(f"{cross['source']}: could not be fetched")
    else:
        lines.append("no independent aggregate for this venue")
    return "<br>".join(lines)


def gaps(board: Dashboard) -> go.Figure:
    if not board.coverage:
        return _empty("Gaps", "no trades in the table yet")
    known: dict[str, int] = defaultdict(int)
    unexplained: dict[str, int] = defaultdict(int)
    for c in board.coverage:
        known[f"{c.exchange} {c.symbol}"] += c.known_gaps
        unexplained[f"{c.exchange} {c.symbol}"] += c.unexplained
    products = sorted(known)
    fig = go.Figure([
        go.Bar(x=products, y=[known[p] for p in products], name="skipped by the exchange (logged)",
               marker_color="#94a3b8"),
        go.Bar(x=products, y=[unexplained[p] for p in products], name="unexplained", marker_color="#dc2626"),
    ])
    fig.update_layout(title="Missing trade ids: known vs unexplained", barmode="group", height=340, **_LAYOUT)
    return fig


def freshness(board: Dashboard) -> go.Figure:
    if not board.freshness:
        return _empty("Freshness", "no trades in the table yet")
    rows = sorted(board.freshness, key=lambda f: f.lag_s)
    unit, seconds = ("hours", 3600) if rows[-1].lag_s >= 7200 else ("minutes", 60)
    fig = go.Figure(go.Bar(
        y=[f"{f.exchange} {f.symbol}" for f in rows], x=[f.lag_s / seconds for f in rows], orientation="h",
        marker_color=[_lag_color(f.lag_s) for f in rows],
        text=[f.newest_trade.isoformat(timespec="seconds") for f in rows],
        hovertemplate="%{y}<br>newest trade %{text}<br>%{x:,.2f} " + unit + " ago<extra></extra>"))
    fig.update_layout(title=f"Freshness: {unit} since the newest trade", height=max(240, 60 + 28 * len(rows)),
                      **_LAYOUT)
    return fig


def _lag_color(seconds: float) -> str:
    return "#16a34a" if seconds < 3600 else "#f59e0b" if seconds < 86400 else "#dc2626"


def storage(board: Dashboard) -> go.Figure:
    if not board.storage_by_exchange:
        return _empty("Storage", "the lake is empty")
    exchanges = list(board.storage_by_exchange)
    raw = [board.storage_by_exchange[e][0] / 1e6 for e in exchanges]
    table = [board.storage_by_exchange[e][1] / 1e6 for e in exchanges]
    fig = go.Figure([go.Bar(x=exchanges, y=raw, name="raw (gzip JSONL)", marker_color="#64748b"),
                     go.Bar(x=exchanges, y=table, name="table (Parquet, zstd)", marker_color="#2563eb")])
    fig.update_layout(title="Storage (MB)", barmode="group", height=320, **_LAYOUT)
    return fig


CHARTS = (("operations", operations), ("api-health", api_health), ("completeness", completeness),
          ("certificates", certificates), ("gaps", gaps), ("freshness", freshness), ("storage", storage))


def _cards(board: Dashboard) -> str:
    h = board.headline
    span = (f"{h.first_trade:%Y-%m-%d %H:%M} → {h.last_trade:%Y-%m-%d %H:%M} UTC"
            if h.first_trade and h.last_trade else "—")
    ratio = f"{h.compression:.1f} : 1" if h.compression else "—"
    cards = [("trades", f"{h.trades:,}"), ("exchanges", str(h.exchanges)), ("products", str(h.products)),
             ("date span", span), ("table size", _bytes(h.table_bytes)),
             ("raw ÷ table", ratio), ("runs (failed)", f"{h.runs:,} ({h.failed_runs})")]
    return "".join(f'<div class="card"><div class="label">{html.escape(k)}</div>'
                   f'<div class="value" data-metric="{html.escape(k)}">{html.escape(v)}</div></div>'
                   for k, v in cards)


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return str(n)


def page(board: Dashboard, charts: Sequence[tuple[str, Any]] = CHARTS) -> str:
    divs = []
    config = {"displaylogo": False, "responsive": True}
    for div_id, build in charts:
        figure = build(board)
        divs.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=config))
    body = "\n".join(f'<section class="chart">{d}</section>' for d in divs)
    return _TEMPLATE.format(
        title="SchemaHub dashboard", lake=html.escape(board.lake),
        generated=board.generated_at.isoformat(timespec="seconds"), cards=_cards(board), charts=body,
        plotly=get_plotlyjs())


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ margin: 0; font-family: Inter, system-ui, sans-serif; background: #f8fafc; color: #0f172a; }}
header {{ padding: 18px 28px; background: #0f172a; color: #f8fafc; }}
header h1 {{ margin: 0; font-size: 20px; }} header p {{ margin: 4px 0 0; color: #94a3b8; font-size: 13px; }}
main {{ padding: 20px 28px; max-width: 1400px; margin: auto; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }}
.card {{ background: white; border-radius: 10px; padding: 14px 16px; box-shadow: 0 1px 3px #0f172a1f; }}
.card .label {{ color: #64748b; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }}
.card .value {{ font-size: 20px; font-weight: 600; margin-top: 6px; }}
.chart {{ background: white; border-radius: 10px; margin-top: 16px; padding: 8px;
          box-shadow: 0 1px 3px #0f172a1f; }}
</style>
<script>{plotly}</script>
</head><body>
<header><h1>SchemaHub</h1><p>lake {lake} · generated {generated}</p></header>
<main><div class="cards">{cards}</div>
{charts}
</main></body></html>
"""
