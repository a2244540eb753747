"""Settings + a venue's connector class -> a connector talking to the venue within its limits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime

import httpx

from schemahub.errors import ConfigError
from schemahub.http.client import ClientConfig, ExchangeClient
from schemahub.http.retry import RetryPolicy
from schemahub.settings import Settings
from schemahub.sources.aggregates import AggregateFeed, VenueBucket
from schemahub.sources.archive import ArchiveSource
from schemahub.sources.base import Product, TradeSource
from schemahub.sources.registry import source_class, spec
from schemahub.stop import StopToken
from schemahub.timeutil import to_us


def base_url(settings: Settings, cls: type[TradeSource]) -> str:
    return settings.venue(cls.name).url or cls.default_base_url


def endpoint(settings: Settings, cls: type[TradeSource]) -> str:
    """Which trade endpoint to ingest from (``SCHEMAHUB_<EXCHANGE>_ENDPOINT``)."""
    chosen = settings.venue(cls.name).endpoint or cls.endpoints[0]
    if chosen not in cls.endpoints:
        raise ConfigError(f"SCHEMAHUB_{cls.name.upper()}_ENDPOINT={chosen!r}: {cls.name} offers "
                          f"{', '.join(cls.endpoints)}")
    return chosen


def client_config(settings: Settings, cls: type[TradeSource], *, rate: float | None = None,
                  burst: int | None = None, unlimited: bool = False) -> ClientConfig:
    """HTTP settings for one venue: its documented limit unless overridden.

    ``rate`` and ``burst`` count trade-page *requests* on every venue; where the venue
    budgets request weight (Binance), they are converted to weight here.
    """
    weight = cls.page_weight.get(endpoint(settings, cls), 1)
    return ClientConfig(
        base_url=base_url(settings, cls),
        rate=None if unlimited else (rate * weight if rate else cls.client_limit.rate),
        burst=burst * weight if burst else cls.client_limit.burst,
        rate_is_explicit=rate is not None,
        connect_timeout=settings.http.connect_timeout,
        read_timeout=settings.http.read_timeout,
        rate_limit_pause=(settings.http.rate_limit_pause if settings.http.rate_limit_pause is not None
                          else cls.rate_limit_pause),
        headers=cls.request_headers,
        used_weight_header=cls.used_weight_header,
        throttle_texts=cls.throttle_texts,
        ban_answer=cls.ban_answer,
        weight_per_minute=None if unlimited else cls.weight_per_minute,
        retry=RetryPolicy(max_attempts=settings.retry.max_attempts, base=settings.retry.base,
                          cap=settings.retry.cap),
        breaker_threshold=settings.breaker.threshold,
        breaker_cooldown=settings.breaker.cooldown,
    )


@contextmanager
def open_archive(settings: Settings, exchange: str, *, stop: StopToken | None = None,
                 transport: httpx.BaseTransport | None = None) -> Iterator[ArchiveSource | None]:
    """The venue's bulk-archive source (None when it publishes none), its client closed on exit.

    Another host than the API: none of the API's request limits apply, only retries, the
    circuit breaker and the timeouts (a read timeout bounds each block, not the download).
    """
    cls = spec(exchange).archive_class()
    if cls is None:
        yield None
        return
    config = replace(client_config(settings, source_class(exchange), unlimited=True),
                     base_url=settings.venue(exchange).archive_url or cls.default_url, headers=(),
                     used_weight_header=None)
    with ExchangeClient(exchange, config, transport=transport, stop=stop) as client:
        yield cls(client)


@contextmanager
def open_source(settings: Settings, exchange: str, *, rate: float | None = None, burst: int | None = None,
                unlimited: bool = False, transport: httpx.BaseTransport | None = None,
                stop: StopToken | None = None) -> Iterator[TradeSource]:
    """The venue's REST connector, its HTTP client closed on exit."""
    cls = source_class(exchange)
    config = client_config(settings, cls, rate=rate, burst=burst, unlimited=unlimited)
    with ExchangeClient(exchange, config, transport=transport, stop=stop) as client:
        yield cls(client, endpoint(settings, cls))


class VenueAggregates:
    """The venues' own aggregates for the certificates' cross-check (``quality.crosscheck``),
    each venue's connector opened on first use and closed with this object."""

    def __init__(self, settings: Settings, stop: StopToken | None = None) -> None:
        self.settings, self.stop = settings, stop
        self._stack = ExitStack()
        self._sources: dict[str, TradeSource] = {}
        self._natives: dict[str, dict[str, Product]] = {}

    def __enter__(self) -> VenueAggregates:
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def _source(self, exchange: str) -> TradeSource:
        if exchange not in self._sources:
            self._sources[exchange] = self._stack.enter_context(open_source(self.settings, exchange,
                                                                            stop=self.stop))
        return self._sources[exchange]

    def feed(self, exchange: str) -> AggregateFeed | None:
        cls = source_class(exchange)
        if cls.aggregate_feed is TradeSource.aggregate_feed:
            return None  # the venue publishes no aggregates: no connection needed
        return self._source(exchange).aggregate_feed()

    def day(self, exchange: str, symbol: str, day: date) -> list[VenueBucket]:
        source = self._source(exchange)
        if exchange not in self._natives:
            self._natives[exchange] = {p.symbol: p for p in source.list_products()}
        product = self._natives[exchange].get(symbol)
        if product is None:
            raise ConfigError(f"{exchange} no longer lists {symbol}: its aggregates cannot be fetched")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return source.day_aggregates(product, to_us(start))
