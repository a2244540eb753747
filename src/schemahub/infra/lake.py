"""Open a lake: its storage and its lease backend, chosen by two URLs.

* the lake: a local path (or ``file://`` URL), or ``s3://bucket/prefix``;
* the leases: files under a local lake's ``state/locks`` (no URL), or ``dynamodb://table``
  (required for an s3:// lake, which many hosts share).

Read-only commands open with ``create=False``: a lake that is not there is an error
("no lake at ...") and nothing is created, so a mistyped ``--lake`` leaves no trace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from schemahub.errors import ConfigError, LakeAccessError
from schemahub.infra.aws import Aws
from schemahub.infra.locks import LocalLocks, LockBackend
from schemahub.infra.storage import LocalStorage, Storage, remove_orphaned_spool_files, storage_error


@dataclass(frozen=True)
class Backends:
    storage: Storage
    locks: LockBackend

    def clear_orphans(self) -> int:
        """Remove what writers killed mid-write left behind (temp and spool files)."""
        if isinstance(self.storage, LocalStorage):
            return self.storage.remove_orphaned_temp_files()
        return remove_orphaned_spool_files()


def connect_lake(lake: str, locks_url: str | None = None, aws: Aws | None = None, *,
                 create: bool = True) -> Backends:
    """The lake's storage and lease backend, checked before anything runs.

    A missing bucket or lock table, refused credentials, or a local path that is a file, not
    writable, or (``create=False``) not there, fail here with one line naming the setting.
    """
    aws = aws or Aws()
    if lake.startswith("s3://"):
        from schemahub.infra.dynamo_locks import DynamoLocks, parse_locks_url
        from schemahub.infra.s3 import S3Storage

        if not locks_url:
            raise ConfigError(f"SCHEMAHUB_LOCKS is not set: a lake at {lake} is shared between hosts, so its "
                              "leases need a shared lock table (SCHEMAHUB_LOCKS=dynamodb://TABLE)")
        s3 = S3Storage(lake, aws)
        dynamo = DynamoLocks(parse_locks_url(locks_url), aws, s3.url_for("state"))
        s3.check()
        dynamo.check()
        return Backends(s3, dynamo)
    if "://" in lake and not lake.startswith("file://"):
        scheme = lake.split("://", 1)[0]
        raise ConfigError(f"SCHEMAHUB_LAKE={lake!r}: scheme {scheme!r} is not supported (use a path, file:// "
                          "or s3://)")
    root = Path(lake.removeprefix("file://")).absolute()
    _check_local(root, create)
    local = LocalStorage(root)
    if locks_url:
        from schemahub.infra.dynamo_locks import DynamoLocks, parse_locks_url

        dynamo = DynamoLocks(parse_locks_url(locks_url), aws, local.url_for("state"))
        dynamo.check()
        return Backends(local, dynamo)
    return Backends(local, LocalLocks(root / "state" / "locks"))


def _check_local(root: Path, create: bool) -> None:
    if root.exists():
        if not root.is_dir():
            raise LakeAccessError(f"the lake {root} is a file, not a folder; check --lake / SCHEMAHUB_LAKE")
        if not os.access(root, os.R_OK | os.X_OK) or (create and not os.access(root, os.W_OK)):
            raise LakeAccessError(f"the lake {root} is not {'writable' if create else 'readable'} for this "
                                  "user; check its permissions or --lake")
        return
    if not create:
        raise LakeAccessError(f"no lake at {root}: nothing there yet (check --lake / SCHEMAHUB_LAKE, or run "
                              "`schemahub ingest` first)")
    try:
        root.mkdir(parents=True)
    except FileExistsError:
        return
    except OSError as exc:
        raise storage_error(exc, root, "cannot create the lake") from None
