"""Lease locks in a DynamoDB table (``SCHEMAHUB_LOCKS=dynamodb://table``), for many hosts.

One item per lease: ``lease`` (partition key: the lake's URL, ``|``, the lease name, so
one table can serve several lakes), ``name``, ``owner``, ``token`` (fencing token),
``acquired_at``, ``expires_at``, ``released``. Every change is a conditional write:

* acquire  - read the item, decide as the local backend does (free, released, expired,
  ours, or its owner provably dead), then put the next token *on condition that the item
  is still exactly what we read* (same token and expiry, or still absent). Two hosts
  racing for one lease: one put succeeds, the other fails its condition -> ``LockHeld``.
  Comparing the expiry too means a holder that renewed in the meantime keeps its lease.
* renew    - update ``expires_at`` on condition that owner and token are ours, it is not
  released and not yet expired; otherwise ``LockLost``.
* release  - mark released (or delete, for names never reused) on condition owner/token.

Expiry compares wall clocks of different hosts: keep them NTP-synced, with the TTL far
above any skew. Run leases (``run/...``) carry ``expires_ttl`` so DynamoDB's TTL removes
those of crashed runs; product leases never expire from the table, because deleting one
would restart its fencing tokens at 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from schemahub.errors import ConfigError, CorruptState, LockHeld, LockLost, SchemahubError
from schemahub.identifiers import lock_name_part
from schemahub.infra.aws import Aws, error_code, translate
from schemahub.infra.locks import Lease, LeaseRecord, check_free

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_CONDITION_FAILED = "ConditionalCheckFailedException"
_RUN_LEASE_KEEP_S = 86_400.0


def parse_locks_url(url: str) -> str:
    """``dynamodb://table`` -> the table name (validated)."""
    table = url[len("dynamodb://"):]
    if not (3 <= len(table) <= 255) or not all(c.isalnum() or c in "_.-" for c in table):
        raise ConfigError(f"SCHEMAHUB_LOCKS={url!r}: {table!r} is not a valid DynamoDB table name")
    return table


KEY = "lease"
"""The table's partition key (a string attribute)."""


class DynamoLocks:
    def __init__(self, table: str, aws: Aws, lake: str, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.lake = lake
        self._db: DynamoDBClient = aws.dynamodb()
        self._clock = clock

    def _key(self, name: str) -> dict[str, Any]:
        return {KEY: {"S": f"{self.lake}|{name}"}}

    def __repr__(self) -> str:
        return f"DynamoLocks({self.table!r})"

    def _error(self, exc: Exception) -> SchemahubError:
        return translate(exc, what=f"DynamoDB table {self.table}", setting="SCHEMAHUB_LOCKS",
                         missing=f"DynamoDB table {self.table!r} does not exist (create it with "
                                 "`schemahub init-cloud`)")

    def check(self) -> None:
        """Fail fast on a missing table, refused credentials or an unreachable endpoint."""
        try:
            self._db.describe_table(TableName=self.table)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc) from None

    # -- the protocol ----------------------------------------------------------------------

    def acquire(self, name: str, owner: str, ttl: float) -> Lease:
        _check_name(name)
        current = self._get(name)
        now = self._clock()
        check_free(current, name, owner, now)
        token = (current.token if current else 0) + 1
        record = LeaseRecord(name=name, owner=owner, token=token, acquired_at=now, expires_at=now + ttl)
        if current is None:
            condition, values = "attribute_not_exists(#key)", {}
        else:
            condition = "#token = :seen_token AND #expires_at = :seen_expires"
            values = {":seen_token": _n(current.token), ":seen_expires": _n(current.expires_at)}
        try:
            self._write(record, condition, values)
        except _ConditionFailed:
            raise LockHeld(f"{name} was taken by another process at the same moment", name=name,
                           owner="another process") from None
        return Lease(name, owner, token, record.expires_at)

    def renew(self, lease: Lease, ttl: float) -> Lease:
        now = self._clock()
        expires = now + ttl
        try:
            self._update(lease, "SET #expires_at = :expires" + _ttl_update(lease.name),
                         "#released = :false AND #expires_at > :now",
                         {":expires": _n(expires), ":now": _n(now), ":false": {"BOOL": False},
                          **_ttl_value(lease.name, expires)})
        except _ConditionFailed:
            raise LockLost(f"lease {lease.name} (token {lease.token}) was lost") from None
        return Lease(lease.name, lease.owner, lease.token, expires)

    def release(self, lease: Lease, forget: bool = False) -> None:
        try:
            if forget:
                self._call(self._db.delete_item, Key=self._key(lease.name),
                           ConditionExpression="#owner = :owner AND #token = :token",
                           ExpressionAttributeNames={"#owner": "owner", "#token": "token"},
                           ExpressionAttributeValues=_ours(lease))
            else:
                now = self._clock()
                self._update(lease, "SET #released = :true, #expires_at = :now", None,
                             {":true": {"BOOL": True}, ":now": _n(now)})
        except _ConditionFailed:
            return  # already lost to someone else: nothing of ours to release

    def list(self) -> list[LeaseRecord]:
        records: list[LeaseRecord] = []
        pages = self._db.get_paginator("scan").paginate(
            TableName=self.table, ConsistentRead=True, FilterExpression="begins_with(#key, :lake)",
            ExpressionAttributeNames={"#key": KEY},
            ExpressionAttributeValues={":lake": {"S": f"{self.lake}|"}})
        try:
            for page in pages:
                records += [_record(item) for item in page.get("Items", [])]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc) from None
        return sorted(records, key=lambda r: r.name)

    # -- DynamoDB calls --------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(TableName=self.table, **kwargs)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == _CONDITION_FAILED:
                raise _ConditionFailed from None
            raise self._error(exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc) from None

    def _get(self, name: str) -> LeaseRecord | None:
        found = self._call(self._db.get_item, Key=self._key(name), ConsistentRead=True)
        item = found.get("Item")
        return None if item is None else _record(item)

    def _write(self, record: LeaseRecord, condition: str, values: dict[str, Any]) -> None:
        item = {**self._key(record.name), "name": {"S": record.name}, "owner": {"S": record.owner},
                "token": _n(record.token),
                "acquired_at": _n(record.acquired_at), "expires_at": _n(record.expires_at),
                "released": {"BOOL": False}}
        if record.name.startswith("run/"):
            item["expires_ttl"] = _n(int(record.expires_at + _RUN_LEASE_KEEP_S))
        names = {"#key": KEY} if "#key" in condition else {"#token": "token", "#expires_at": "expires_at"}
        kwargs: dict[str, Any] = {"Item": item, "ConditionExpression": condition,
                                  "ExpressionAttributeNames": names}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        self._call(self._db.put_item, **kwargs)

    def _update(self, lease: Lease, update: str, extra_condition: str | None, values: dict[str, Any]) -> None:
        condition = "#owner = :owner AND #token = :token"
        if extra_condition:
            condition += f" AND {extra_condition}"
        names = {"#owner": "owner", "#token": "token", "#released": "released", "#expires_at": "expires_at"}
        if "#expires_ttl" in update:
            names["#expires_ttl"] = "expires_ttl"
        self._call(self._db.update_item, Key=self._key(lease.name), UpdateExpression=update,
                   ConditionExpression=condition, ExpressionAttributeNames=names,
                   ExpressionAttributeValues={**_ours(lease), **values})


class _ConditionFailed(Exception):
    """A conditional write found the item changed (internal: mapped to LockHeld/LockLost)."""


def _check_name(name: str) -> None:
    for part in name.split("/"):
        lock_name_part(part)


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _ours(lease: Lease) -> dict[str, Any]:
    return {":owner": {"S": lease.owner}, ":token": _n(lease.token)}


def _ttl_update(name: str) -> str:
    return ", #expires_ttl = :ttl" if name.startswith("run/") else ""


def _ttl_value(name: str, expires: float) -> dict[str, Any]:
    return {":ttl": _n(int(expires + _RUN_LEASE_KEEP_S))} if name.startswith("run/") else {}


def _record(item: dict[str, Any]) -> LeaseRecord:
    try:
        return LeaseRecord(name=item["name"]["S"], owner=item["owner"]["S"], token=int(item["token"]["N"]),
                           acquired_at=float(item["acquired_at"]["N"]),
                           expires_at=float(item["expires_at"]["N"]), released=bool(item["released"]["BOOL"]))
    except (KeyError, ValueError, TypeError) as exc:
        name = item.get("name", {}).get("S", "?")
        raise CorruptState(f"lease item {name!r} in DynamoDB is malformed ({exc!r}); delete it if no run is "
                           "active", path=f"dynamodb item {name}") from None
