"""Settings: parsed once, from CLI flags and ``SCHEMAHUB_*``/``AWS_*`` environment variables,
into one typed, frozen tree. No other module reads the environment.

Flags win over the environment, the environment over defaults. Every value is checked
when the tree is built; a bad one is a ``ConfigError`` that names the variable, and an
unknown ``SCHEMAHUB_*`` variable is an error that names the closest known one (a typo
must not be silently ignored).

=====================================  ==========================================================
``SCHEMAHUB_LAKE``                     lake location: a path or ``s3://bucket/prefix`` (``./lake``)
``SCHEMAHUB_LOCKS``                    ``dynamodb://table`` for leases (required for an s3:// lake)
``SCHEMAHUB_GLUE_DATABASE``            Glue database ``init-cloud`` registers tables in (``schemahub``)
``SCHEMAHUB_<EXCHANGE>_URL``           an exchange's REST base URL (the simulator, a proxy)
``SCHEMAHUB_<EXCHANGE>_ARCHIVE_URL``   an exchange's bulk-archive base URL (where it has one)
``SCHEMAHUB_<EXCHANGE>_ENDPOINT``      which trade endpoint (Binance: historicalTrades or aggTrades)
``SCHEMAHUB_HTTP_CONNECT_TIMEOUT``     seconds to open a connection (5)
``SCHEMAHUB_HTTP_READ_TIMEOUT``        seconds to wait for an answer (15)
``SCHEMAHUB_RETRY_MAX_ATTEMPTS``       attempts per request (8)
``SCHEMAHUB_RETRY_BASE``               first backoff ceiling in seconds (0.5)
``SCHEMAHUB_RETRY_CAP``                largest backoff ceiling in seconds (30)
``SCHEMAHUB_BREAKER_THRESHOLD``        consecutive failures that open the circuit (8)
``SCHEMAHUB_BREAKER_COOLDOWN``         seconds before the first recovery probe (2)
``SCHEMAHUB_RATE_LIMIT_PAUSE``         seconds every thread pauses after a 429 without Retry-After
                                       (default: the exchange's own, 1; Kraken 3)
``SCHEMAHUB_LOCK_TTL``                 lease lifetime in seconds (30)
``SCHEMAHUB_RAW_FILE_TRADES``          trades per raw file: fetched pages are gathered into files
                                       of about this many (one page per file on a local lake,
                                       20000 on an object store)
``SCHEMAHUB_RAW_FILE_MAX_AGE``         ...but pages wait at most this many seconds (30)
``SCHEMAHUB_METRICS``                  ``cloudwatch``: each run prints CloudWatch EMF lines to stderr
``SCHEMAHUB_METRICS_NAMESPACE``        CloudWatch namespace of those metrics (``SchemaHub``)
``AWS_*``                              region, credentials, profile, endpoint: boto3's standard chain
=====================================  ==========================================================
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemahub.errors import ConfigError
from schemahub.infra.aws import Aws
from schemahub.sources.registry import list_exchanges, spec

DEFAULT_LAKE = "./lake"
DEFAULT_GLUE_DATABASE = "schemahub"
_GLUE_DATABASE = re.compile(r"[a-z][a-z0-9_]{0,254}")
_NAMESPACE = re.compile(r"[A-Za-z0-9/_.#:-]{1,255}")
_VENUE_SETTINGS = ("URL", "ENDPOINT")
_ARCHIVE_SETTINGS = ("ARCHIVE_URL",)
"""Only for venues that publish a bulk archive (their spec names an archive source)."""


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    rate_limit_pause: float | None = None
    """Seconds every thread pauses after a throttle answer without Retry-After (None: the venue's)."""


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 8
    base: float = 0.5
    cap: float = 30.0


@dataclass(frozen=True)
class BreakerSettings:
    threshold: int = 8
    cooldown: float = 2.0


@dataclass(frozen=True)
class RawFileSettings:
    trades: int | None = None
    """Trades per raw file (None: one page per file on a local lake, OBJECT_STORE_FILE_TRADES
    on an object store)."""
    max_age_s: float = 30.0

    def trades_for(self, lake: str) -> int:
        """0: one file per page."""
        if self.trades is not None:
            return self.trades
        return OBJECT_STORE_FILE_TRADES if lake.startswith("s3://") else 0


OBJECT_STORE_FILE_TRADES = 20_000
"""On S3, a raw file of 20 pages: 20x fewer PUTs at ingest and GETs at transform, ~1 MB each."""


@dataclass(frozen=True)
class LockSettings:
    url: str | None = None
    """``dynamodb://table``, or None: lease files in a local lake."""
    ttl: float = 30.0


@dataclass(frozen=True)
class MetricsSettings:
    cloudwatch: bool = False
    namespace: str = "SchemaHub"


@dataclass(frozen=True)
class VenueSettings:
    """Where to reach one exchange (None: its documented default)."""

    url: str | None = None
    archive_url: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class Settings:
    lake: str = DEFAULT_LAKE
    http: HttpSettings = field(default_factory=HttpSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    locks: LockSettings = field(default_factory=LockSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    raw_files: RawFileSettings = field(default_factory=RawFileSettings)
    glue_database: str = DEFAULT_GLUE_DATABASE
    aws: Aws = field(default_factory=Aws)
    venues: Mapping[str, VenueSettings] = field(default_factory=dict)
    repair_gap_wait_s: float = 6 * 3600.0
    """How long an id range the exchange skipped waits before ``repair`` asks for it once more
    (exchanges restore data after an incident; asking at once would only see the hole again)."""

    @classmethod
    def load(cls, lake: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``env`` (default: this process's environment) and the ``--lake`` flag."""
        return parse(dict(os.environ if env is None else env), lake)

    def venue(self, exchange: str) -> VenueSettings:
        return self.venues.get(exchange) or VenueSettings()


def known_variables() -> list[str]:
    names = ["SCHEMAHUB_LAKE", "SCHEMAHUB_LOCKS", "SCHEMAHUB_GLUE_DATABASE", "SCHEMAHUB_HTTP_CONNECT_TIMEOUT",
             "SCHEMAHUB_HTTP_READ_TIMEOUT", "SCHEMAHUB_RETRY_MAX_ATTEMPTS", "SCHEMAHUB_RETRY_BASE",
             "SCHEMAHUB_RETRY_CAP", "SCHEMAHUB_BREAKER_THRESHOLD", "SCHEMAHUB_BREAKER_COOLDOWN",
             "SCHEMAHUB_RATE_LIMIT_PAUSE", "SCHEMAHUB_LOCK_TTL", "SCHEMAHUB_METRICS",
             "SCHEMAHUB_METRICS_NAMESPACE", "SCHEMAHUB_RAW_FILE_TRADES", "SCHEMAHUB_RAW_FILE_MAX_AGE",
             "SCHEMAHUB_REPAIR_GAP_WAIT"]
    for exchange in list_exchanges():
        suffixes = _VENUE_SETTINGS + (_ARCHIVE_SETTINGS if spec(exchange).archive else ())
        names += [f"SCHEMAHUB_{exchange.upper()}_{suffix}" for suffix in suffixes]
    return names


def parse(env: Mapping[str, str], lake: str | None = None) -> Settings:
    """Build the settings tree from ``env``; ``ConfigError`` names the first bad variable."""
    known = known_variables()
    for name in sorted(env):
        if name.startswith("SCHEMAHUB_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown setting {name}{hint}; the settings are listed in the README "
                              "(Configuration)")

    def text(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    def number(name: str, default: float, minimum: float = 0.0) -> float:
        raw = text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if not value >= minimum:  # also refuses nan
            raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
        return value

    def whole(name: str, default: int, minimum: int) -> int:
        value = number(name, default, minimum)
        if value != int(value):
            raise ConfigError(f"{name}={text(name)!r} must be a whole number")
        return int(value)

    def url(name: str) -> str | None:
        value = text(name)
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name}={value!r} must be an http:// or https:// URL")
        return value.rstrip("/") if value else None

    pause = text("SCHEMAHUB_RATE_LIMIT_PAUSE")
    locks = text("SCHEMAHUB_LOCKS")
    if locks is not None and not locks.startswith("dynamodb://"):
        raise ConfigError(f"SCHEMAHUB_LOCKS={locks!r}: expected dynamodb://TABLE (or unset: lease files in "
                          "a local lake)")
    metrics = (text("SCHEMAHUB_METRICS") or "none").lower()
    if metrics not in ("none", "cloudwatch"):
        raise ConfigError(f"SCHEMAHUB_METRICS={metrics!r}: expected cloudwatch or none")
    namespace = text("SCHEMAHUB_METRICS_NAMESPACE") or MetricsSettings.namespace
    if not _NAMESPACE.fullmatch(namespace):
        raise ConfigError(f"SCHEMAHUB_METRICS_NAMESPACE={namespace!r} is not a CloudWatch namespace")
    database = text("SCHEMAHUB_GLUE_DATABASE") or DEFAULT_GLUE_DATABASE
    if not _GLUE_DATABASE.fullmatch(database):
        raise ConfigError(f"SCHEMAHUB_GLUE_DATABASE={database!r}: use lower-case letters, digits and _")
    venues = {}
    for exchange in list_exchanges():
        prefix = f"SCHEMAHUB_{exchange.upper()}_"
        venues[exchange] = VenueSettings(url=url(prefix + "URL"), archive_url=url(prefix + "ARCHIVE_URL"),
                                         endpoint=text(prefix + "ENDPOINT"))
    return Settings(
        lake=lake or text("SCHEMAHUB_LAKE") or DEFAULT_LAKE,
        http=HttpSettings(
            connect_timeout=number("SCHEMAHUB_HTTP_CONNECT_TIMEOUT", 5.0, minimum=0.01),
            read_timeout=number("SCHEMAHUB_HTTP_READ_TIMEOUT", 15.0, minimum=0.01),
            rate_limit_pause=None if pause is None else number("SCHEMAHUB_RATE_LIMIT_PAUSE", 1.0)),
        retry=RetrySettings(max_attempts=whole("SCHEMAHUB_RETRY_MAX_ATTEMPTS", 8, minimum=1),
                            base=number("SCHEMAHUB_RETRY_BASE", 0.5),
                            cap=number("SCHEMAHUB_RETRY_CAP", 30.0)),
        breaker=BreakerSettings(threshold=whole("SCHEMAHUB_BREAKER_THRESHOLD", 8, minimum=1),
                                cooldown=number("SCHEMAHUB_BREAKER_COOLDOWN", 2.0)),
        locks=LockSettings(url=locks, ttl=number("SCHEMAHUB_LOCK_TTL", 30.0, minimum=1.0)),
        metrics=MetricsSettings(cloudwatch=metrics == "cloudwatch", namespace=namespace),
        raw_files=RawFileSettings(
            trades=None if text("SCHEMAHUB_RAW_FILE_TRADES") is None
            else whole("SCHEMAHUB_RAW_FILE_TRADES", 0, minimum=0),
            max_age_s=number("SCHEMAHUB_RAW_FILE_MAX_AGE", 30.0, minimum=0.0)),
        glue_database=database,
        aws=Aws.from_env(env),
        venues=venues,
        repair_gap_wait_s=number("SCHEMAHUB_REPAIR_GAP_WAIT", Settings.repair_gap_wait_s),
    )
