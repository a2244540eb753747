"""Observability commands: the dashboard file, and `serve` (dashboard and /metrics over HTTP)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from schemahub import pipeline
from schemahub.cli.app import LakeOption, app, context, errors, out, settings_for, stop_on_signals
from schemahub.errors import ConfigError


@app.command()
@errors
def dashboard(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the HTML file.")] =
        Path("dashboard.html"),
    lake: LakeOption = None,
) -> None:
    """Write the pipeline dashboard: one self-contained HTML file (no network needed to view it)."""
    page = pipeline.dashboard_html(settings_for(lake))
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}") from None
    out.print(f"dashboard written to {output.absolute()}")


@app.command()
@errors
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8787,
    metrics: Annotated[bool, typer.Option("--metrics", help="Also serve Prometheus metrics at /metrics.")]
        = False,
    refresh: Annotated[float, typer.Option(min=0, help="Seconds a built dashboard is reused.")] = 30.0,
    lake: LakeOption = None,
) -> None:
    """Serve the dashboard at / (rebuilt at most every --refresh seconds) and, with --metrics,
    the lake's Prometheus metrics at /metrics."""
    from schemahub.dashboard.server import DashboardServer

    settings = settings_for(lake)
    storage = pipeline.open_backends(settings, create=False).storage  # fail fast on a bad lake
    server = DashboardServer(lambda: pipeline.dashboard_html(settings), storage, host=host, port=port,
                             metrics=metrics, refresh=refresh)
    with stop_on_signals() as stop:
        server.start()
        bound_host, bound_port = server.address
        paths = "dashboard /" + (", metrics /metrics" if metrics else "")
        sys.stdout.write(f"serving http://{bound_host}:{bound_port} ({paths})\n")
        sys.stdout.flush()
        while not stop.wait(3600):
            pass
        server.stop()


@app.command()
@errors
def doctor(
    offline: Annotated[bool, typer.Option(
        "--offline", help="Skip the lake: check only this installation and its settings.")] = False,
    lake: LakeOption = None,
) -> None:
    """Check the installation (engines, connectors, mappings, settings) and that the lake answers."""
    from schemahub.doctor import diagnose

    findings = diagnose(lake or context.lake, os.environ, offline=offline)
    for finding in findings:
        out.print(f"{'ok  ' if finding.ok else 'FAIL'}  {finding.name:<10}  {finding.detail}",
                  markup=False, highlight=False)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)
