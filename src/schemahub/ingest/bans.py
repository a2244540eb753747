"""Bans an exchange gave this deployment's IP, remembered across runs and hosts.

Binance answers 418 once an IP has ignored its 429s, with ``Retry-After`` set to the ban's
length, and lengthens the bans of repeat offenders (from 2 minutes to 3 days). Within a
run the circuit breaker stops at the first 418. This file
(``state/bans/<exchange>.json``) makes the next runs - the next scheduled ingest, the other
hosts of a scale-out - keep away until the ban ends instead of knocking again. Delete it
to try earlier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from schemahub.errors import CorruptState
from schemahub.identifiers import exchange_name
from schemahub.infra.storage import Storage

# A 418 without Retry-After: assume a long ban rather than the 2-minute minimum.
UNKNOWN_BAN = timedelta(minutes=10)


class Ban(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange: str
    until: datetime
    reason: str

    def describe(self) -> str:
        return (f"{self.exchange} banned this IP until {self.until.isoformat(timespec='seconds')}; "
                f"not asking it before then ({self.reason})")


def ban_key(exchange: str) -> str:
    return f"state/bans/{exchange_name(exchange)}.json"


def active_ban(storage: Storage, exchange: str, now: datetime) -> Ban | None:
    """The exchange's ban if it has not ended at ``now``."""
    data = storage.read(ban_key(exchange))
    if data is None:
        return None
    try:
        ban = Ban.model_validate(orjson.loads(data))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        where = storage.url_for(ban_key(exchange))
        raise CorruptState(f"{where} is not a ban record ({exc}); delete it to let ingest ask the "
                           "exchange again", path=where) from None
    return ban if ban.until > now else None


def remember_ban(storage: Storage, exchange: str, banned_for_s: float | None, reason: str,
                 now: datetime | None = None) -> Ban:
    now = now or datetime.now(UTC)
    length = UNKNOWN_BAN if banned_for_s is None else timedelta(seconds=banned_for_s)
    ban = Ban(exchange=exchange, until=now + length, reason=reason)
    storage.write(ban_key(exchange), orjson.dumps(ban.model_dump(mode="json")))
    return ban
