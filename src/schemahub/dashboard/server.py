"""``schemahub serve``: the dashboard at ``/`` and, optionally, Prometheus metrics at ``/metrics``.

The page is rebuilt at most every ``refresh`` seconds; metrics are read from the lake on
each scrape (metrics/prometheus.py). The server keeps no state of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from schemahub.errors import ConfigError, SchemahubError
from schemahub.infra.storage import Storage


class DashboardServer:
    def __init__(self, build_page: Callable[[], str], storage: Storage, *, host: str, port: int,
                 metrics: bool, refresh: float) -> None:
        self._build_page = build_page
        self._refresh = refresh
        self._cache: tuple[float, str] | None = None
        self._cache_lock = threading.Lock()
        self._registry = None
        if metrics:
            from prometheus_client import CollectorRegistry

            from schemahub.metrics.prometheus import LakeCollector

            self._registry = CollectorRegistry()
            self._registry.register(LakeCollector(storage))
        try:
            self._server = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def page(self) -> str:
        with self._cache_lock:
            if self._cache is None or time.monotonic() - self._cache[0] > self._refresh:
                self._cache = (time.monotonic(), self._build_page())
            return self._cache[1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    if self.path in ("/", "/index.html"):
                        self._send(200, "text/html; charset=utf-8", server.page().encode())
                    elif self.path == "/metrics" and server._registry is not None:
                        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                        self._send(200, CONTENT_TYPE_LATEST, generate_latest(server._registry))
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

        return Handler
