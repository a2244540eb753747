"""Typed settings from CLI flags and ``SCHEMAHUB_*`` environment variables.

Flags win over the environment, the environment over defaults. Every value is checked
when it is read, and a bad one is a ``ConfigError`` that names the variable.

=================================  ==========================================================
``SCHEMAHUB_LAKE``                 lake location: a path or ``s3://bucket/prefix`` (default ``./lake``)
``SCHEMAHUB_LOCKS``                ``dynamodb://table`` for leases (required for an s3:// lake)
``SCHEMAHUB_GLUE_DATABASE``        Glue database ``init-cloud`` registers tables in (``schemahub``)
``AWS_*``                          region, credentials, profile, endpoint: boto3's standard chain
``SCHEMAHUB_<EXCHANGE>_URL``       base URL of an exchange, e.g. the simulator or a proxy
``SCHEMAHUB_<EXCHANGE>_ENDPOINT``  which trade endpoint (Binance: historicalTrades or aggTrades)
``SCHEMAHUB_HTTP_CONNECT_TIMEOUT`` seconds to open a connection (default 5)
``SCHEMAHUB_HTTP_READ_TIMEOUT``    seconds to wait for an answer (default 15)
``SCHEMAHUB_RETRY_MAX_ATTEMPTS``   attempts per request (default 8)
``SCHEMAHUB_RETRY_BASE``           first backoff ceiling in seconds (default 0.5)
``SCHEMAHUB_RETRY_CAP``            largest backoff ceiling in seconds (default 30)
``SCHEMAHUB_BREAKER_THRESHOLD``    consecutive failures that open the circuit (default 8)
``SCHEMAHUB_BREAKER_COOLDOWN``     seconds before the first recovery probe (default 2)
``SCHEMAHUB_RATE_LIMIT_PAUSE``     seconds all threads pause after a 429 without Retry-After (1)
``SCHEMAHUB_LOCK_TTL``             lease lifetime in seconds (default 30)
``SCHEMAHUB_METRICS``              ``cloudwatch``: each run prints CloudWatch EMF lines to stderr
=================================  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemahub.errors import ConfigError
from schemahub.http.client import ClientConfig
from schemahub.http.retry import RetryPolicy
from schemahub.sources.base import TradeSource

DEFAULT_LAKE = "./lake"


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


@dataclass(frozen=True)
class Settings:
    lake: str = DEFAULT_LAKE
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, lake: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(lake=lake or env.get("SCHEMAHUB_LAKE") or DEFAULT_LAKE, env=env)

    def exchange_url(self, source: type[TradeSource]) -> str:
        variable = f"SCHEMAHUB_{source.name.upper()}_URL"
        url = self.env.get(variable) or source.default_base_url
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{variable}={url!r} must be an http:// or https:// URL")
        return url.rstrip("/")

    @property
    def emit_metrics(self) -> bool:
        """``SCHEMAHUB_METRICS=cloudwatch``: print each run's metrics as CloudWatch EMF lines."""
        value = (self.env.get("SCHEMAHUB_METRICS") or "none").strip().lower()
        if value not in ("none", "cloudwatch"):
            raise ConfigError(f"SCHEMAHUB_METRICS={value!r}: expected cloudwatch or none")
        return value == "cloudwatch"

    @property
    def lock_ttl(self) -> float:
        return _number(self.env, "SCHEMAHUB_LOCK_TTL", 30.0, minimum=1.0)

    def exchange_endpoint(self, source: type[TradeSource]) -> str:
        """Which trade endpoint to ingest from (``SCHEMAHUB_<EXCHANGE>_ENDPOINT``)."""
        variable = f"SCHEMAHUB_{source.name.upper()}_ENDPOINT"
        endpoint = self.env.get(variable) or source.endpoints[0]
        if endpoint not in source.endpoints:
            raise ConfigError(f"{variable}={endpoint!r}: {source.name} offers {', '.join(source.endpoints)}")
        return endpoint

    def client_config(self, source: type[TradeSource], rate: float | None = None,
                      burst: int | None = None, unlimited: bool = False) -> ClientConfig:
        """HTTP settings for one exchange: its documented limit unless overridden."""
        env = self.env
        return ClientConfig(
            base_url=self.exchange_url(source),
            rate=None if unlimited else (rate or source.client_limit.rate),
            burst=burst or source.client_limit.burst,
            rate_is_explicit=rate is not None,
            connect_timeout=_number(env, "SCHEMAHUB_HTTP_CONNECT_TIMEOUT", 5.0, minimum=0.01),
            read_timeout=_number(env, "SCHEMAHUB_HTTP_READ_TIMEOUT", 15.0, minimum=0.01),
            rate_limit_pause=_number(env, "SCHEMAHUB_RATE_LIMIT_PAUSE", source.rate_limit_pause),
            headers=source.request_headers,
            used_weight_header=source.used_weight_header,
            weight_per_minute=None if unlimited else source.weight_per_minute,
            retry=RetryPolicy(
                max_attempts=int(_number(env, "SCHEMAHUB_RETRY_MAX_ATTEMPTS", 8, minimum=1)),
                base=_number(env, "SCHEMAHUB_RETRY_BASE", 0.5),
                cap=_number(env, "SCHEMAHUB_RETRY_CAP", 30.0),
            ),
            breaker_threshold=int(_number(env, "SCHEMAHUB_BREAKER_THRESHOLD", 8, minimum=1)),
            breaker_cooldown=_number(env, "SCHEMAHUB_BREAKER_COOLDOWN", 2.0),
        )
