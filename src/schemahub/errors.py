"""The one error tree of SchemaHub.

Every failure that crosses a module boundary is one of these. Lower-level errors
(httpx, OSError, JSON decoding, pydantic validation) are translated exactly once,
at the boundary that sees them, so callers only ever handle ``SchemahubError``.

::

    SchemahubError
    ├── ConfigError                     bad flag, setting or identifier (exit 2)
    │   ├── UnknownExchange
    │   ├── InvalidIdentifier
    │   ├── MappingError                a YAML mapping that does not validate (file:line)
    │   └── LakeAccessError             no lake there, not a directory, no permission
    ├── QueryError                      SQL that DuckDB refused, or a write in a read-only session (exit 2)
    ├── ExchangeError                   anything the exchange (or the way to it) did
    │   ├── RateLimited          [T]    429; carries retry_after
    │   ├── ExchangeUnavailable  [T]    5xx
    │   ├── ExchangeTimeout      [T]    connect/read timeout, hung request
    │   ├── ExchangeConnectionError [T] refused, reset, truncated body
    │   ├── MalformedResponse    [T]    body that is not what the API promises
    │   ├── ExchangeRejected            other 4xx: our request is wrong, retrying won't help
    │   ├── ExchangeBanned              418: the IP is banned; stop calling this exchange at once
    │   └── CircuitOpen                 too many consecutive failures: wait for a probe, or stop
    ├── StateError                      lake state that cannot be trusted
    │   ├── CorruptState                unreadable checkpoint, lease, gap log or raw header
    │   └── CommitConflict              compare-and-swap lost against another writer
    ├── StorageError                    the storage backend failed (I/O error, disk full)
    ├── ArchiveError                    a bulk archive that cannot be trusted
    │   └── ChecksumMismatch            its bytes are not what the venue published
    └── LockError
        ├── LockHeld                    someone else holds the lease (exit 3)
        └── LockLost                    our lease expired or was taken over
    Interrupted                         SIGINT/SIGTERM: stop what is in flight (exit 130)

``[T]`` marks ``Transient`` errors: the retry policy retries those and nothing else.
"""

from __future__ import annotations


class SchemahubError(Exception):
    """Base class of every error SchemaHub raises on purpose."""

    exit_code = 1


class Transient:
    """Marker mixin: the operation may succeed if repeated after a pause."""


class ConfigError(SchemahubError):
    """A flag, environment variable or identifier is invalid."""

    exit_code = 2


class LakeAccessError(ConfigError):
    """The lake location cannot be used: nothing there, not a directory, or no permission."""


class UnknownExchange(ConfigError):
    """The exchange name is not registered."""


class InvalidIdentifier(ConfigError):
    """An exchange or symbol does not match its strict pattern (it would become a path)."""


class MappingError(ConfigError):
    """A YAML mapping is invalid; the message names the file and the line."""

    def __init__(self, message: str, *, path: str, line: int | None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class ExchangeError(SchemahubError):
    """Base for failures talking to an exchange; carries where it happened."""

    def __init__(self, message: str, *, exchange: str, url: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.exchange = exchange
        self.url = url
        self.status = status


class RateLimited(Transient, ExchangeError):
    """HTTP 429 (or the exchange's equivalent)."""

    def __init__(self, message: str, *, exchange: str, url: str | None = None,
                 status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, exchange=exchange, url=url, status=status)
        self.retry_after = retry_after


class ExchangeUnavailable(Transient, ExchangeError):
    """HTTP 5xx: the exchange failed; the request may succeed later."""


class ExchangeTimeout(Transient, ExchangeError):
    """No (complete) answer in time."""


class ExchangeConnectionError(Transient, ExchangeError):
    """The connection failed: refused, reset, or closed mid-body."""


class MalformedResponse(Transient, ExchangeError):
    """The body is not valid JSON or not the documented shape (often a truncated body)."""


class ExchangeRejected(ExchangeError):
    """HTTP 4xx other than rate limiting: the request itself is wrong."""


class ExchangeBanned(ExchangeError):
    """The exchange banned our IP (Binance 418). Never retried: each call extends the ban."""

    def __init__(self, message: str, *, exchange: str, url: str | None = None,
                 banned_for: float | None = None) -> None:
        super().__init__(message, exchange=exchange, url=url, status=418)
        self.banned_for = banned_for


class CircuitOpen(ExchangeError):
    """The circuit breaker for this exchange is open; calls fail without touching the network.

    ``dead`` means the breaker gave up on the exchange (recovery probes failed too): the
    run must stop. Otherwise ``retry_in`` says when the next probe is allowed.
    """

    def __init__(self, message: str, *, exchange: str, dead: bool, retry_in: float) -> None:
        super().__init__(message, exchange=exchange)
        self.dead = dead
        self.retry_in = retry_in


class QueryError(SchemahubError):
    """The SQL failed (syntax, unknown column, a write in a read-only session); DuckDB says why."""

    exit_code = 2


class StateError(SchemahubError):
    """Base for lake state problems."""


class CorruptState(StateError):
    """A state file (checkpoint, lease, gap log, raw header) cannot be read or parsed."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class CommitConflict(StateError):
    """A compare-and-swap write lost: another writer changed the object first."""


class StorageError(SchemahubError):
    """The storage backend failed (I/O error, permission, missing bucket)."""


class ArchiveError(SchemahubError):
    """A bulk archive file that cannot be stored or used (its contents break a promise)."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ChecksumMismatch(Transient, ArchiveError):
    """The downloaded bytes do not hash to the digest the venue published (retried)."""

    def __init__(self, message: str, *, url: str, expected: str, actual: str) -> None:
        super().__init__(message, url=url)
        self.expected = expected
        self.actual = actual


class LockError(SchemahubError):
    """Base for lease problems."""


class LockHeld(LockError):
    """The lease is held by another live owner (exit status 3: "someone else is on it")."""

    exit_code = 3

    def __init__(self, message: str, *, name: str, owner: str) -> None:
        super().__init__(message)
        self.name = name
        self.owner = owner


class LockLost(LockError):
    """Our lease expired or was taken over; we must stop writing under it."""


class Interrupted(SchemahubError):
    """The run was asked to stop (SIGINT/SIGTERM); what was committed is kept."""

    exit_code = 130


def is_transient(exc: BaseException) -> bool:
    """True when retrying the failed operation can help."""
    return isinstance(exc, Transient)
