"""The exchange simulator: a real HTTP/1.1 server on loopback with rate limits and faults.

Requests pass, in order: the per-IP token bucket (429 with the exchange's own body),
the fault dice (connection reset, hung request, 5xx, truncated body), the latency
knob, then the exchange's route. ``/_sim/...`` control endpoints are exempt from both
and let a test or benchmark read the ground truth and stats of a simulator running in
another process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from schemahub.simulator.archive import ArchiveFaults
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.market import Market, ProductSpec
from schemahub.simulator.wire import Reply, json_reply
from schemahub.sources.registry import DEFAULT_EXCHANGE

log = logging.getLogger("schemahub.simulator")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Faults:
    """Fault knobs; probabilities are per request."""

    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    truncate_rate: float = 0.0
    reset_rate: float = 0.0
    rate_limit: bool = True
    rate: float = 10.0
    burst: int = 15
    """Per-IP token bucket (Coinbase, Kraken)."""
    weight_limit: int = 6000
    """Request weight per IP per window (Binance)."""
    weight_window_s: float = 60.0
    """Binance's window: one minute; tests shorten it."""
    ban_after: int = 2
    """Requests a client may send after being told 429 (past a short grace for requests
    already on the wire) before Binance bans it (418); negative: ban at the first excess."""
    ban_s: float = 120.0
    """Length of the first ban; each further ban doubles it."""
    only_paths: str | None = None
    """Regex: inject faults (not rate limits) only into requests whose path matches."""
    archive: ArchiveFaults = field(default_factory=ArchiveFaults)
    """The bulk-archive host's knobs (venues with one)."""


class ManualClock:
    """A clock that moves only when told to: the head of every stream grows on ``advance``."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class _State:
    faults: Faults
    rng: random.Random
    stats: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Simulator:
    """Serves one simulated exchange on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, exchange: str = DEFAULT_EXCHANGE, products: Iterable[ProductSpec] | None = None, *,
                 seed: int = 42, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.exchange = exchange
        start_us = int(clock() * 1_000_000)
        api_class = simulator_class(exchange)
        specs = api_class.default_products if products is None else products
        markets = {p.native: Market(p, seed, start_us) for p in specs}
        self.api = api_class(markets)
        self._state = _State(faults or Faults(), random.Random(seed))
        self._stopping = threading.Event()
        self._server = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def faults(self) -> Faults:
        with self._state.lock:
            return self._state.faults

    def set_faults(self, **changes: Any) -> Faults:
        with self._state.lock:
            self._state.faults = replace(self._state.faults, **changes)
        self.api.reset_limits()
        return self.faults

    def stats(self) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.stats)

    def now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def ground_truth(self, symbol: str) -> list[Any]:
        return self.api.ground_truth(symbol, self.now_us())

    def market(self, symbol: str) -> Market:
        """The market of a normalized symbol (BTC-USD)."""
        return self.api.market_of(symbol)

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request pipeline ---------------------------------------------------------

    def admit(self, client_ip: str, path: str, query: dict[str, str]) -> Reply | None:
        """The exchange's own limits: None, or its refusal (429, 418, Kraken's 200 error)."""
        with self._state.lock:
            self._state.stats["requests"] += 1
        refused = self.api.admit(client_ip, path, query, self.faults)
        if refused is None:
            return None
        reply, kind = refused
        with self._state.lock:
            self._state.stats[kind] += 1
        return reply

    def decide(self, path: str) -> str:
        """Roll the dice for one request: ok, reset, hang, error or truncate."""
        state = self._state
        with state.lock:
            f = state.faults
            if f.only_paths is not None and not re.search(f.only_paths, path):
                return "ok"
            roll = state.rng.random()
            for outcome, rate in (("reset", f.reset_rate), ("hang", f.hang_rate),
                                  ("error", f.error_rate), ("truncate", f.truncate_rate)):
                if roll < rate:
                    state.stats[outcome] += 1
                    return outcome
                roll -= rate
            return "ok"

    def latency(self) -> float:
        f = self.faults
        with self._state.lock:
            jitter = self._state.rng.uniform(-f.latency_jitter_s, f.latency_jitter_s)
        return max(0.0, f.latency_s + jitter)

    def error_status(self) -> int:
        with self._state.lock:
            return self._state.rng.choice((500, 502, 503))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def pause(self, seconds: float) -> None:
        """Wait (a paced download), or less when the server stops."""
        self._stopping.wait(seconds)

    def hang(self) -> None:
        """Hold a request without answering until hang_s passes or the server stops."""
        self._stopping.wait(self.faults.hang_s)

    def control(self, path: str, query: dict[str, str]) -> Reply:
        if path == "/_sim/stats":
            return json_reply(200, self.stats())
        if path == "/_sim/ground-truth":
            symbol = query.get("product", "")
            if symbol not in self.api.markets:
                return json_reply(404, {"message": f"unknown product {symbol!r}"})
            lines = b"\n".join(orjson.dumps(t) for t in self.ground_truth(symbol))
            return Reply(200, lines + b"\n", (("content-type", "application/x-ndjson"),))
        if path == "/_sim/warm":
            self.api.warm(self.now_us())
            return json_reply(200, {"ok": True})
        return json_reply(404, {"message": "unknown control endpoint"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or get killed hang up mid-answer; that is not a server bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s went away", client_address)
            return
        super().handle_error(request, client_address)


def _make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "schemahub-simulator"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.client_address[0], *args)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query))
            if parts.path.startswith("/_sim/"):
                self._send(sim.control(parts.path, query))
                return
            archive = sim.api.archive
            on_archive = archive is not None and parts.path.startswith(archive.prefix)
            # The archive is another host: the API's request-weight limits do not apply to it.
            refused = None if on_archive else sim.admit(self.client_address[0], parts.path, query)
            if refused is not None:
                self._send(sim.api.finish(refused, self.client_address[0]))
                return
            outcome = sim.decide(parts.path)
            if outcome == "reset":
                self._reset()
                return
            if outcome == "hang":
                sim.hang()
                self.close_connection = True
                return
            delay = sim.latency()
            if delay:
                time.sleep(delay)  # simulated network latency
            if outcome == "error":
                self._send(sim.api.server_error(sim.error_status()))
                return
            if archive is not None and on_archive:
                reply = archive.serve(parts.path, sim.now_us(), sim.faults.archive)
                self._send(reply, truncate=outcome == "truncate" or reply.stop_halfway)
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = sim.api.route(parts.path, query, sim.now_us(), headers)
            self._send(sim.api.finish(reply, self.client_address[0]), truncate=outcome == "truncate")

        def _send(self, reply: Reply, truncate: bool = False) -> None:
            size = reply.file.stat().st_size if reply.file is not None else len(reply.body)
            self.send_response(reply.status)
            if not any(name.lower() == "content-type" for name, _ in reply.headers):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(size))
            if truncate:
                self.send_header("Connection", "close")
            self.end_headers()
            limit = size // 2 if truncate else size
            if reply.file is None and not reply.flip_byte and reply.bytes_per_s is None:
                self.wfile.write(reply.body[:limit])
            else:
                self._stream(reply, limit, size // 2 if reply.flip_byte else -1)
            if truncate:
                self.close_connection = True

        def _stream(self, reply: Reply, limit: int, flip_at: int) -> None:
            """Send the first ``limit`` bytes in blocks, paced and corrupted as the reply asks."""
            started, sent = time.monotonic(), 0
            with contextlib.ExitStack() as stack:
                source = stack.enter_context(open(reply.file, "rb")) if reply.file is not None \
                    else io.BytesIO(reply.body)
                while sent < limit and not sim.stopping:
                    block = bytearray(source.read(min(_BLOCK, limit - sent)))
                    if not block:
                        return
                    if sent <= flip_at < sent + len(block):
                        block[flip_at - sent] ^= 0xFF
                    self.wfile.write(block)
                    sent += len(block)
                    if reply.bytes_per_s:
                        ahead = sent / reply.bytes_per_s - (time.monotonic() - started)
                        if ahead > 0:
                            sim.pause(ahead)

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

    return Handler
