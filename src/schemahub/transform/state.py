"""Transform bookkeeping in the lake: quarantined raw files and listing hints.

* ``state/quarantine/<exchange>/<symbol>/<raw file name>.json`` - a raw file the transform
  could not use, and why. Written *before* the commit that moves the cursor past the
  file, so a file is never skipped silently. ``check`` reports them (their trades count
  as missing); ``schemahub quarantine release`` sets the file aside
  (``state/released/...``) and asks ``schemahub repair`` to fetch its range again;
  ``transform --retry-quarantined`` tries a file repaired by hand again.
* ``state/transform/<exchange>/<symbol>.json`` - where the last transform ended (trade id
  and day), so the next one lists raw folders from that day on. Only a hint: the
  authoritative cursor is in the Delta table; a stale or missing hint means a longer
  listing, never a wrong result.
"""

from __future__ import annotations

from datetime import date, datetime

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from schemahub.identifiers import exchange_name, symbol
from schemahub.infra.storage import Storage
from schemahub.raw.layout import RawKey


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quarantined(_Model):
    key: str
    reason: str
    detected_at: datetime
    run_id: str


class ListingHint(_Model):
    through_id: int
    through_day: date


def _quarantine_prefix(exchange: str, sym: str) -> str:
    return f"state/quarantine/{exchange_name(exchange)}/{symbol(sym)}/"


def quarantine(storage: Storage, raw: RawKey, reason: str, run_id: str, when: datetime) -> Quarantined:
    record = Quarantined(key=raw.key, reason=reason, detected_at=when, run_id=run_id)
    name = raw.key.rsplit("/", 1)[1]
    storage.write(_quarantine_prefix(raw.exchange, raw.symbol) + name + ".json",
                  orjson.dumps(record.model_dump(mode="json")))
    return record


def quarantined(storage: Storage, exchange: str, sym: str) -> dict[str, Quarantined]:
    """Raw key -> record, for one product."""
    found = {}
    for info in storage.list(_quarantine_prefix(exchange, sym)):
        data = storage.read(info.key)
        if data is None:
            continue
        try:
            record = Quarantined.model_validate(orjson.loads(data))
        except (orjson.JSONDecodeError, ValidationError):
            continue  # an unreadable record is as good as none: the file is simply tried again
        found[record.key] = record
    return found


def all_quarantined(storage: Storage) -> list[Quarantined]:
    records = []
    for info in storage.list("state/quarantine/"):
        data = storage.read(info.key)
        if data is not None:
            try:
                records.append(Quarantined.model_validate(orjson.loads(data)))
            except (orjson.JSONDecodeError, ValidationError):
                continue
    return records


def release(storage: Storage, raw: RawKey) -> None:
    name = raw.key.rsplit("/", 1)[1]
    storage.delete(_quarantine_prefix(raw.exchange, raw.symbol) + name + ".json")


def set_aside(storage: Storage, raw: RawKey, data: bytes) -> str:
    """Keep a released file's bytes (``state/released/...``) for forensics; its location."""
    name = raw.key.rsplit("/", 1)[1]
    key = f"state/released/{exchange_name(raw.exchange)}/{symbol(raw.symbol)}/{name}"
    storage.write(key, data)
    return storage.url_for(key)


def _hint_key(exchange: str, sym: str) -> str:
    return f"state/transform/{exchange_name(exchange)}/{symbol(sym)}.json"


def read_hint(storage: Storage, exchange: str, sym: str) -> ListingHint | None:
    data = storage.read(_hint_key(exchange, sym))
    if data is None:
        return None
    try:
        return ListingHint.model_validate(orjson.loads(data))
    except (orjson.JSONDecodeError, ValidationError):
        return None


def write_hint(storage: Storage, exchange: str, sym: str, hint: ListingHint) -> None:
    storage.write(_hint_key(exchange, sym), orjson.dumps(hint.model_dump(mode="json")))
