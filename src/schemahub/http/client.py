"""One HTTP client per exchange: pooled httpx connections behind a shared token bucket,
a circuit breaker and the retry policy.

This is the only place that sees httpx exceptions and raw status codes; everything above
it gets ``JsonResponse`` or a ``schemahub.errors.ExchangeError``. Every wait - the token
bucket, a retry's backoff, the answer itself - ends as soon as the run's stop token is
set: requests in flight are abandoned (http/abandon.py), not waited for.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar, overload

import httpx
import orjson

from schemahub import __version__
from schemahub.errors import (
    ChecksumMismatch,
    ExchangeBanned,
    ExchangeConnectionError,
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
)
from schemahub.http import abandon
from schemahub.http.breaker import CircuitBreaker
from schemahub.http.ratelimit import TokenBucket
from schemahub.http.retry import RetryPolicy
from schemahub.metrics.counters import RequestStats
from schemahub.stop import StopToken

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
    ban_answer: tuple[int, str, float] | None = None
    """(status, body text, seconds) of the venue's "this IP is banned" answer besides 418."""
    throttle_texts: tuple[str, ...] = ()
    """Error texts that mean "throttled" whatever the status (Bitfinex sends ERR_RATE_LIMIT
    with HTTP 500): such an answer is a 429, not a server error."""


@dataclass(frozen=True)
class Download:
    """A body streamed to a file: where from, how big, its sha256, when."""

    url: str
    size: int
    sha256: str
    fetched_at: datetime


_CHUNK = 1 << 20


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
                 transport: httpx.BaseTransport | None = None, stop: StopToken | None = None) -> None:
        self.exchange = exchange
        self.config = config
        self.stop = stop or StopToken()
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
        self._senders = abandon.DaemonPool(f"http-{exchange}", config.max_connections)

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
        count = self._counter(stats)

        def attempt() -> T:
            started = time.monotonic()
            response = self._send(path, params, count)
            elapsed = time.monotonic() - started
            count(status=str(response.status_code), seconds=elapsed, requests=1, bytes=len(response.content),
                  latency_s=elapsed)
            return parse(self._interpret(response, elapsed, count))

        return self.config.retry.call(lambda: self._guarded(attempt, count, weight),
                                      on_retry=self._on_retry(path, count), stop=self.stop)

    def download(self, path: str, sink: BinaryIO, *, expect_sha256: Callable[[], str | None] | None = None,
                 stats: RequestStats | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> Download | None:
        """Stream ``path`` into ``sink`` (emptied before each attempt); None when it answers 404.

        ``expect_sha256`` names the digest the bytes must have (asked once the download is
        complete); a mismatch is retried like a truncated body and, when the retries run out,
        raised as ``ChecksumMismatch`` with both digests. Memory stays bounded: the body goes
        to ``sink`` a megabyte at a time. ``on_bytes`` hears of every block (progress bars).
        """
        count = self._counter(stats)

        def receive(response: httpx.Response) -> Download | None:
            if response.status_code == 404:
                return None
            self._check_status(response, count)
            digest, size = hashlib.sha256(), 0
            for chunk in response.iter_raw(_CHUNK):
                self.stop.check()
                sink.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            return Download(url=redact_url(str(response.request.url)), size=size, sha256=digest.hexdigest(),
                            fetched_at=datetime.now(UTC))

        def attempt() -> Download | None:
            sink.seek(0)
            sink.truncate()
            started = time.monotonic()
            got = self._send(path, None, count, consume=receive)
            elapsed = time.monotonic() - started
            count(status="404" if got is None else "200", seconds=elapsed, requests=1,
                  bytes=0 if got is None else got.size, latency_s=elapsed)
            wanted = expect_sha256() if got is not None and expect_sha256 is not None else None
            if got is not None and wanted is not None and wanted != got.sha256:
                raise ChecksumMismatch(f"{self.exchange}: {got.url} has sha256 {got.sha256}, the published "
                                       f"checksum is {wanted}", url=got.url, expected=wanted,
                                       actual=got.sha256)
            return got

        return self.config.retry.call(lambda: self._guarded(attempt, count, 1),
                                      on_retry=self._on_retry(path, count), stop=self.stop)

    def _counter(self, stats: RequestStats | None) -> Count:
        counters = [self.stats] if stats is None else [self.stats, stats]

        def count(status: str | None = None, seconds: float | None = None, **deltas: float) -> None:
            for c in counters:
                c.add(**deltas)
                if status is not None:
                    c.observe(status, seconds)

        return count

    def _on_retry(self, path: str, count: Count) -> Callable[[BaseException, float], None]:
        def on_retry(exc: BaseException, delay: float) -> None:
            count(retries=1)
            log.warning("retrying %s %s in %.2fs: %s", self.exchange, path, delay, exc,
                        extra={"exchange": self.exchange, "delay_s": round(delay, 3)})

        return on_retry

    def _guarded(self, attempt: Callable[[], T], count: Count, weight: int) -> T:
        """One attempt behind the breaker and the limiter, its outcome accounted for."""
        self.breaker.before_call()
        count(limiter_wait_s=self.bucket.acquire(weight, self.stop))
        outcome_recorded = False
        try:
            result = attempt()
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
        except (ExchangeUnavailable, ExchangeTimeout, ExchangeConnectionError, MalformedResponse,
                ChecksumMismatch) as exc:
            if isinstance(exc, MalformedResponse | ChecksumMismatch):
                count(malformed=1)
            self.breaker.on_failure(str(exc))
            outcome_recorded = True
            raise
        finally:
            if not outcome_recorded:
                self.breaker.on_neutral()

    @overload
    def _send(self, path: str, params: Mapping[str, str | int] | None, count: Count) -> httpx.Response: ...

    @overload
    def _send(self, path: str, params: Mapping[str, str | int] | None, count: Count, *,
              consume: Callable[[httpx.Response], T]) -> T: ...

    def _send(self, path: str, params: Mapping[str, str | int] | None, count: Count, *,
              consume: Callable[[httpx.Response], T] | None = None) -> httpx.Response | T:
        """One GET (``consume``: streamed, the body read by it); every httpx failure becomes the
        ``ExchangeError`` it means."""

        def get() -> httpx.Response | T:
            if consume is None:
                return self._http.get(path, params=params)
            with self._http.stream("GET", path, params=params) as response:
                return consume(response)

        try:
            return abandon.call(self._senders, get, self.stop)
        except httpx.TimeoutException as exc:
            count(status="timeout", requests=1, timeouts=1)
            raise ExchangeTimeout(f"{self.exchange}: no answer to {path} in time ({_reason(exc)})",
                                  exchange=self.exchange, url=path) from exc
        except httpx.TransportError as exc:
            count(status="unreachable", requests=1, connection_errors=1)
            raise ExchangeConnectionError(f"{self.exchange}: cannot reach {self.config.base_url} "
                                          f"({_reason(exc)})", exchange=self.exchange, url=path) from exc
        except httpx.DecodingError as exc:
            count(status="undecodable", requests=1, malformed=1)
            raise MalformedResponse(f"{self.exchange}: the answer to {path} could not be decoded "
                                    f"({_reason(exc)})", exchange=self.exchange, url=path) from exc
        except httpx.TooManyRedirects as exc:
            count(status="redirects", requests=1)
            raise ExchangeRejected(f"{self.exchange}: too many redirects for {path}; check "
                                   f"SCHEMAHUB_{self.exchange.upper()}_URL", exchange=self.exchange,
                                   url=path) from exc
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            count(status="failed", requests=1)
            raise ExchangeRejected(f"{self.exchange}: request to {path} failed ({_reason(exc)})",
                                   exchange=self.exchange, url=path) from exc

    def _interpret(self, response: httpx.Response, elapsed: float, count: Count) -> JsonResponse:
        url = redact_url(str(response.request.url))
        status = response.status_code
        self._check_status(response, count)
        self._watch_weight(response)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(f"{self.exchange} sent invalid JSON for {url} "
                                    f"({len(response.content)} bytes): {exc}",
                                    exchange=self.exchange, url=url, status=status) from exc
        return JsonResponse(data=data, status=status, headers=response.headers, url=url,
                            fetched_at=datetime.now(UTC), elapsed=elapsed, size=len(response.content))

    def _check_status(self, response: httpx.Response, count: Count) -> None:
        """Raise the ``ExchangeError`` an error status means (a streamed body is read for it)."""
        url = redact_url(str(response.request.url))
        status = response.status_code
        if status >= 400 and not response.is_closed:
            response.read()
        ban = self.config.ban_answer
        if ban is not None and status == ban[0] and ban[1].encode() in response.content[:512].lower():
            raise ExchangeBanned(f"{self.exchange} answered {status} (IP banned for {ban[2]:.0f}s): "
                                 f"{_error_text(response)}", exchange=self.exchange, url=url,
                                 banned_for=ban[2])
        if status == 418:
            banned_for = parse_retry_after(response.headers.get("Retry-After"))
            raise ExchangeBanned(f"{self.exchange} answered 418 (IP banned for {banned_for or '?'}s): "
                                 f"{_error_text(response)}", exchange=self.exchange, url=url,
                                 banned_for=banned_for)
        if status == 429 or (status >= 400 and self._throttle_text(response)):
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

    def _throttle_text(self, response: httpx.Response) -> bool:
        texts = self.config.throttle_texts
        return bool(texts) and any(text.encode() in response.content[:512] for text in texts)

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
