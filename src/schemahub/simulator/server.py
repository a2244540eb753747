"""The exchange simulator: a real HTTP/1.1 server on loopback with rate limits and faults.

Requests pass, in order: the per-IP token bucket (429 with the exchange's own body),
the fault dice (connection reset, hung request, 5xx, truncated body), the latency
knob, then the exchange's route. ``/_sim/...`` control endpoints are exempt from both
and let a test or benchmark read the ground truth and stats of a simulator running in
another process.
"""

from __future__ import annotations

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

from schemahub.http.ratelimit import TokenBucket
from schemahub.simulator.coinbase import CoinbaseSim
from schemahub.simulator.market import Market, ProductSpec
from schemahub.simulator.wire import Reply, SimulatedExchange, json_reply

log = logging.getLogger("schemahub.simulator")


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
    only_paths: str | None = None
    """Regex: inject faults (not rate limits) only into requests whose path matches."""


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


DEFAULT_PRODUCTS: tuple[ProductSpec, ...] = (
    ProductSpec("BTC-USD", 64_000.0, mean_size=0.02, trades_per_s=6.0, history=60_000, first_id=700_000_001),
    ProductSpec("ETH-USD", 3_400.0, mean_size=0.4, trades_per_s=4.0, history=40_000, first_id=510_000_001),
    ProductSpec("SOL-USD", 150.0, price_decimals=3, size_decimals=6, mean_size=8.0, trades_per_s=3.0,
                history=30_000, first_id=90_000_001, id_format="mixed"),
    ProductSpec("BTC-USDT", 64_010.0, mean_size=0.01, trades_per_s=1.0, history=10_000,
                first_id=18_500_001, id_format="string"),
    ProductSpec("ETH-BTC", 0.053, price_decimals=5, mean_size=0.5, trades_per_s=0.5, history=5_000,
                first_id=40_000_001),
    ProductSpec("DOGE-USD", 0.16, price_decimals=5, size_decimals=1, mean_size=900.0, trades_per_s=1.0,
                history=5_000, first_id=1),
    ProductSpec("OLD-USD", 1.0, trades_per_s=0.1, history=100, status="delisted", trading_disabled=True),
    ProductSpec("HALT-USD", 2.0, trades_per_s=0.1, history=100, cancel_only=True),
)

EXCHANGES: dict[str, type[SimulatedExchange]] = {"coinbase": CoinbaseSim}


@dataclass
class _State:
    faults: Faults
    rng: random.Random
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Simulator:
    """Serves one simulated exchange on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, exchange: str = "coinbase", products: Iterable[ProductSpec] = DEFAULT_PRODUCTS, *,
                 seed: int = 42, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        start_us = int(clock() * 1_000_000)
        markets = {p.symbol: Market(p, seed, start_us) for p in products}
        self.api = EXCHANGES[exchange](markets)
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
            self._state.buckets.clear()
            return self._state.faults

    def stats(self) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.stats)

    def now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def ground_truth(self, symbol: str) -> list[Any]:
        return self.api.ground_truth(symbol, self.now_us())

    def market(self, symbol: str) -> Market:
        return self.api.markets[symbol]

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

    def decide(self, client_ip: str, path: str) -> str:
        """Roll the dice for one request: ok, limited, reset, hang, error or truncate."""
        state = self._state
        with state.lock:
            f = state.faults
            state.stats["requests"] += 1
            if f.rate_limit:
                bucket = state.buckets.get(client_ip)
                if bucket is None:
                    # Real time, not the market clock: limits hold even when a test freezes the market.
                    bucket = state.buckets[client_ip] = TokenBucket(f.rate, f.burst)
                if not bucket.try_take():
                    state.stats["429"] += 1
                    return "limited"
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
            outcome = sim.decide(self.client_address[0], parts.path)
            if outcome == "limited":
                self._send(sim.api.rate_limited())
                return
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
            reply = sim.api.route(parts.path, query, sim.now_us())
            self._send(reply, truncate=outcome == "truncate")

        def _send(self, reply: Reply, truncate: bool = False) -> None:
            self.send_response(reply.status)
            if not any(name.lower() == "content-type" for name, _ in reply.headers):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if truncate:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body[: len(reply.body) // 2] if truncate else reply.body)
            if truncate:
                self.close_connection = True

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

    return Handler
