"""Developer commands: the exchange simulator, and the version."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from schemahub import __version__
from schemahub.cli.app import ExchangeOption, app, errors, out, stop_on_signals
from schemahub.errors import ConfigError
from schemahub.sources.registry import DEFAULT_EXCHANGE, list_exchanges


@app.command()
@errors
def simulate(
    exchange: ExchangeOption = DEFAULT_EXCHANGE,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8700,
    seed: Annotated[int, typer.Option(help="Seed of the trade streams and the fault dice.")] = 42,
    latency: Annotated[float, typer.Option(min=0, help="Added latency per request, seconds.")] = 0.0,
    jitter: Annotated[float, typer.Option(min=0, help="Latency jitter (+/- seconds).")] = 0.0,
    error_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of 5xx answers.")] = 0.0,
    hang_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of requests never answered.")] = 0.0,
    truncate_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of truncated bodies.")] = 0.0,
    reset_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of connection resets.")] = 0.0,
    rate_limit: Annotated[bool, typer.Option(help="Enforce the per-IP token bucket.")] = True,
    rate: Annotated[float | None, typer.Option(
        min=0.01, help="Server-side requests/s per IP (default: the exchange's documented limit).")] = None,
    burst: Annotated[int | None, typer.Option(min=1, help="Server-side burst per IP.")] = None,
    weight_limit: Annotated[int | None, typer.Option(
        min=1, help="Binance: request weight per minute per IP (default 6000).")] = None,
    history_scale: Annotated[float, typer.Option(
        min=0.001, help="Multiply every product's history (trades existing at start).")] = 1.0,
    history_days: Annotated[float | None, typer.Option(
        min=0.001, help="Spread every product's history over this many days before now (slower "
                        "trading): days long past, for bulk archives and backfills.")] = None,
) -> None:
    """Serve a simulated exchange over HTTP until interrupted (prints its URL first)."""
    from dataclasses import replace

    from schemahub.simulator.catalog import simulator_class
    from schemahub.simulator.server import Faults, Simulator

    api = simulator_class(exchange)
    given = {"rate": rate, "burst": burst, "weight_limit": weight_limit}
    limits = {**api.limits, **{k: v for k, v in given.items() if v is not None}}
    faults = Faults(latency_s=latency, latency_jitter_s=jitter, error_rate=error_rate, hang_rate=hang_rate,
                    truncate_rate=truncate_rate, reset_rate=reset_rate, rate_limit=rate_limit,
                    **limits)  # type: ignore[arg-type]
    specs = [replace(p, history=max(1, int(p.history * history_scale))) for p in api.default_products]
    if history_days is not None:
        specs = [replace(p, trades_per_s=p.history / (history_days * 86400)) for p in specs]
    try:
        sim = Simulator(exchange, specs, seed=seed, host=host, port=port, faults=faults)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    with stop_on_signals() as stop, sim:
        sys.stdout.write(f"simulator listening on {sim.url}\n")
        sys.stdout.flush()
        while not stop.wait(3600):
            pass


@app.command()
def version() -> None:
    """Print the version and the registered exchanges."""
    out.print(f"schemahub {__version__} (exchanges: {', '.join(list_exchanges())})")
