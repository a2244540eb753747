"""One HTTP client per exchange: pooled httpx connections behind a shared token bucket,
a circuit breaker and the retry policy.

This is the only place that sees httpx exceptions and raw status codes; everything above
it gets ``JsonResponse`` or a ``schemahub.errors.ExchangeError``.
"""

from __future__ import annotations

import bisect
import email.utils
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson

from schemahub import __version__
from schemahub.errors import (
    ExchangeBanned,
    ExchangeConnectionError,
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
)
from schemahub.http.breaker import CircuitBreaker
from schemahub.http.ratelimit import TokenBucket
from schemahub.http.retry import RetryPolicy

log = logging.getLogger("schemahub.http")

T = TypeVar("T")
Count = Callable[..., None]

_SECRET_PARAM = re.compile(r"(?i)(sig|signature|key|token|secret|credential|password|x-amz-[a-z-]+)=[^&]*")


def redact_url(url: str) -> str:
    """Drop userinfo and secret-looking query values so a URL is safe to log or store."""
    url = re.sub(r"://[^/@]+@", "://", url)
    return _SECRET_PARAM.sub(lambda m: m.group(1) + "=REDACTED", url)


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    rate: float | None
    """Client-side requests per second; None disables the limiter."""
    burst: int
    rate_is_explicit: bool = False
    """The user chose ``rate`` (--rate): an exchange's announced budget does not replace it."""
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    max_connections: int = 64
    rate_limit_pause: float = 1.0
    """How long every thread pauses after a 429 that carries no Retry-After."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_threshold: int = 8
    breaker_cooldown: float = 2.0
    breaker_probes: int = 3
    headers: tuple[tuple[str, str], ...] = ()
    """Sent with every request (e.g. Binance's X-MBX-TIME-UNIT)."""
    used_weight_header: str | None = None
    """A response header with the weight this IP used in the current minute (Binance)."""
    weight_per_minute: int | None = None
    """The exchange's weight budget per minute; near it, every thread waits for the next minute."""


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request latency histogram (Prometheus' default buckets)."""


@dataclass
class RequestStats:
    """Counters of one exchange, or of one product's share of it. Thread-safe."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    bytes: int = 0
    banned: int = 0
    limiter_wait_s: float = 0.0
    latency_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    """Answers by HTTP status ("200", "429", ...), and "timeout" / "unreachable" for none."""
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    """Answered requests per latency bucket (upper bounds LATENCY_BUCKETS, then +Inf)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def observe(self, status: str, seconds: float | None) -> None:
        """One request's outcome (and latency, when it was answered)."""
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if seconds is not None:
                self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                                   if not f.name.startswith("_")}
            out["statuses"] = dict(self.statuses)
            out["latency_buckets"] = list(self.latency_buckets)
            return out


@dataclass(frozen=True)
class JsonResponse:
    data: Any
    status: int
    headers: Mapping[str, str]
    url: str
    """Full request URL, redacted for storage and logs."""
    fetched_at: datetime
    elapsed: float
    size: int


class ExchangeClient:
    """Sends GET requests to one exchange within its limits and returns parsed JSON."""

    def __init__(self, exchange: str, config: ClientConfig,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.exchange = exchange
        self.config = config
        self.bucket = TokenBucket(config.rate, config.burst)
        self.breaker = CircuitBreaker(
            exchange, failure_threshold=config.breaker_threshold,
            cooldown=config.breaker_cooldown, max_failed_probes=config.breaker_probes)
        self.stats = RequestStats()
        self.ban: ExchangeBanned | None = None
        """The 418 that banned us this run, if any (bans are remembered across runs)."""
        self.weight_per_minute = config.weight_per_minute
        limits = httpx.Limits(max_connections=config.max_connections,
                              max_keepalive_connections=config.max_connections)
        self._http = httpx.Client(
            base_url=config.base_url,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            limits=limits,
            transport=transport,
            headers={"User-Agent": f"schemahub/{__version__}", "Accept": "application/json",
                     **dict(config.headers)},
        )

    def close(self) -> None:
        self._http.close()

    def set_weight_budget(self, per_minute: int) -> None:
        """Adopt the exchange's announced weight budget (e.g. Binance exchangeInfo.rateLimits).

        A fixed one-minute window allows at most ``burst + 60 x rate`` weight in any
        minute; 95 % of the budget as rate and 5 % as burst never exceeds it.
        """
        self.weight_per_minute = per_minute
        if self.bucket.rate is not None and not self.config.rate_is_explicit:
            self.bucket.reconfigure(0.95 * per_minute / 60.0, max(1, int(0.05 * per_minute)))

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_json(self, path: str, params: Mapping[str, str | int] | None = None,
                 stats: RequestStats | None = None) -> JsonResponse:
        """GET ``path`` with retries; raise an ``ExchangeError`` when it cannot succeed."""
        return self.fetch(path, params, lambda response: response, stats)

    def fetch(self, path: str, params: Mapping[str, str | int] | None,
              parse: Callable[[JsonResponse], T], stats: RequestStats | None = None,
              weight: int = 1) -> T:
        """GET ``path`` and ``parse`` the answer, retrying both as one attempt.

        ``parse`` raises ``MalformedResponse`` (see ``shape_error``) when the body is not the
        documented shape; that is retried like a truncated body, and counts as a failure
        for the circuit breaker. It may also raise ``RateLimited`` or another
        ``ExchangeError`` for errors an exchange reports inside a 200 answer (Kraken).
        ``weight`` is the request's cost in the exchange's budget (1 unless it weighs them).
        """
        counters = [self.stats] if stats is None else [self.stats, stats]

        def count(status: str | None = None, seconds: float | None = None, **deltas: float) -> None:
            for c in counters:
                c.add(**deltas)
                if status is not None:
                    c.observe(status, seconds)

        def on_retry(exc: BaseException, delay: float) -> None:
            count(retries=1)
            log.warning("retrying %s %s in %.2fs: %s", self.exchange, path, delay, exc,
                        extra={"exchange": self.exchange, "delay_s": round(delay, 3)})

        return self.config.retry.call(lambda: self._attempt(path, params, parse, count, weight),
                                      on_retry=on_retry)

    def _attempt(self, path: str, params: Mapping[str, str | int] | None,
                 parse: Callable[[JsonResponse], T], count: Count, weight: int) -> T:
        self.breaker.before_call()
        count(limiter_wait_s=self.bucket.acquire(weight))
        started = time.monotonic()
        outcome_recorded = False
        try:
            try:
                response = self._http.get(path, params=params)
            except httpx.TimeoutException as exc:
                count(status="timeout", requests=1, timeouts=1)
                raise ExchangeTimeout(f"{self.exchange}: no answer to {path} in time ({_reason(exc)})",
                                      exchange=self.exchange, url=path) from exc
            except httpx.TransportError as exc:
                count(status="unreachable", requests=1, connection_errors=1)
                raise ExchangeConnectionError(
                    f"{self.exchange}: cannot reach {self.config.base_url} ({_reason(exc)})",
                    exchange=self.exchange, url=path) from exc
            elapsed = time.monotonic() - started
            count(status=str(response.status_code), seconds=elapsed, requests=1, bytes=len(response.content),
                  latency_s=elapsed)
            result = parse(self._interpret(response, elapsed, count))
            self.breaker.on_success()
            outcome_recorded = True
            return result
        except RateLimited as exc:
            # Every thread of this exchange backs off, not just the one that was told.
            pause = exc.retry_after if exc.retry_after is not None else self.config.rate_limit_pause
            self.bucket.pause(pause)
            count(rate_limited=1)
            raise
        except ExchangeBanned as exc:
            self.ban = self.ban or exc
            self.breaker.ban(str(exc))
            count(banned=1)
            outcome_recorded = True
            log.error("%s", exc, extra={"exchange": self.exchange, "banned_for_s": exc.banned_for})
            raise
        except (ExchangeUnavailable, ExchangeTimeout, ExchangeConnectionError, MalformedResponse) as exc:
            if isinstance(exc, MalformedResponse):
                count(malformed=1)
            self.breaker.on_failure(str(exc))
            outcome_recorded = True
            raise
        finally:
            if not outcome_recorded:
                self.breaker.on_neutral()

    def _interpret(self, response: httpx.Response, elapsed: float, count: Count) -> JsonResponse:
        url = redact_url(str(response.request.url))
        status = response.status_code
        if status == 418:
            banned_for = parse_retry_after(response.headers.get("Retry-After"))
            raise ExchangeBanned(f"{self.exchange} answered 418 (IP banned for {banned_for or '?'}s): "
                                 f"{_error_text(response)}", exchange=self.exchange, url=url,
                                 banned_for=banned_for)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimited(f"{self.exchange} rate limit hit (429): {_error_text(response)}",
                              exchange=self.exchange, url=url, retry_after=retry_after)
        if status >= 500:
            count(server_errors=1)
            raise ExchangeUnavailable(f"{self.exchange} answered {status}: {_error_text(response)}",
                                      exchange=self.exchange, url=url, status=status)
        if status >= 400:
            raise ExchangeRejected(f"{self.exchange} rejected {url} with {status}: {_error_text(response)}",
                                   exchange=self.exchange, url=url, status=status)
        self._watch_weight(response)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(f"{self.exchange} sent invalid JSON for {url} "
                                    f"({len(response.content)} bytes): {exc}",
                                    exchange=self.exchange, url=url, status=status) from exc
        return JsonResponse(data=data, status=status, headers=response.headers, url=url,
                            fetched_at=datetime.now(UTC), elapsed=elapsed, size=len(response.content))


    def _watch_weight(self, response: httpx.Response) -> None:
        """Near the minute's weight budget (ours plus anyone's on this IP), wait it out."""
        header, limit = self.config.used_weight_header, self.weight_per_minute
        if header is None or limit is None:
            return
        try:
            used = int(response.headers.get(header, "0"))
        except ValueError:
            return
        if used >= 0.9 * limit:
            seconds = 60.0 - (time.time() % 60.0) + 0.25
            log.info("%s: %d of %d weight used this minute; pausing %.1fs",
                     self.exchange, used, limit, seconds)
            self.bucket.pause(seconds)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_text(response: httpx.Response) -> str:
    """The exchange's own error message, if its body carries one (bounded for logs)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "msg", "error"):
            if key in body:
                return str(body[key])[:200]
    return str(body)[:200]


def shape_error(response: JsonResponse, exchange: str, what: str) -> MalformedResponse:
    """Error for a body that parsed but is not the documented shape."""
    return MalformedResponse(f"{exchange} sent an unexpected body for {response.url}: {what}",
                             exchange=exchange, url=response.url, status=response.status)
