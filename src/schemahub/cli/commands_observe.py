"""Observability commands: the dashboard file, and `serve` (dashboard and /metrics over HTTP)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated

import typer

from schemahub import pipeline
from schemahub.cli.app import LakeOption, app, errors, out
from schemahub.config import Settings
from schemahub.errors import ConfigError, SchemahubError


@app.command()
@errors
def dashboard(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the HTML file.")] =
        Path("dashboard.html"),
    lake: LakeOption = None,
) -> None:
    """Write the pipeline dashboard: one self-contained HTML file (no network needed to view it)."""
    page = pipeline.dashboard_html(Settings.load(lake))
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
    settings = Settings.load(lake)
    storage = pipeline.open_lake(settings).storage  # fail fast on a bad lake
    exporter = None
    if metrics:
        from prometheus_client import CollectorRegistry

        from schemahub.metrics.prometheus import LakeCollector

        exporter = CollectorRegistry()
        exporter.register(LakeCollector(storage))
    cache: dict[str, tuple[float, str]] = {}
    cache_lock = threading.Lock()

    def page() -> str:
        with cache_lock:
            built = cache.get("page")
            if built is None or time.monotonic() - built[0] > refresh:
                built = (time.monotonic(), pipeline.dashboard_html(settings))
                cache["page"] = built
            return built[1]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                if self.path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page().encode())
                elif self.path == "/metrics" and exporter is not None:
                    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(exporter))
                elif self.path == "/healthz":
                    self._send(200, "text/plain", b"ok\n")
                else:
                    self._send(404, "text/plain", b"not found\n")
            except SchemahubError as exc:
                self._send(500, "text/plain", f"error: {exc}\n".encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # requests are not logged: a scrape every 15 s would drown the log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    paths = "dashboard /" + (", metrics /metrics" if metrics else "")
    sys.stdout.write(f"serving http://{bound_host!s}:{bound_port} ({paths})\n")
    sys.stdout.flush()
    stop.wait()
    server.shutdown()
    server.server_close()


@app.command()
@errors
def doctor(
    offline: Annotated[bool, typer.Option(
        "--offline", help="Skip the lake: check only this installation and its settings.")] = False,
    lake: LakeOption = None,
) -> None:
    """Check the installation (engines, connectors, mappings, settings) and that the lake answers."""
    from schemahub.doctor import diagnose

    findings = diagnose(Settings.load(lake), offline=offline)
    for finding in findings:
        out.print(f"{'ok  ' if finding.ok else 'FAIL'}  {finding.name:<10}  {finding.detail}",
                  markup=False, highlight=False)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)
