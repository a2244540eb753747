"""A lake in an S3 bucket (``s3://bucket/prefix``), or any store with S3's conditional writes.

Every object is written by ONE PUT, so readers see it whole or not at all. The two
guarded writes map onto S3 conditional requests:

* ``create``     - ``If-None-Match: *``: only the first writer of a raw file wins (412 for
  the others), so a file is never overwritten;
* ``replace_if`` - ``If-Match: <ETag>`` (or ``If-None-Match: *`` for a first version): a
  checkpoint moves only from the version its writer read. A stale writer gets 412 and a
  ``CommitConflict``; it can never move a watermark backwards or over another's progress.

S3 may also answer 409 ``ConditionalRequestConflict`` while another conditional write to
the same key is in flight: that is retried a few times, then treated as a conflict.
A store without conditional writes cannot hold a SchemaHub lake (nor a Delta table).
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import botocore.exceptions

from schemahub.errors import CommitConflict, ConfigError, SchemahubError
from schemahub.infra import processes
from schemahub.infra.aws import Aws, error_code, translate
from schemahub.infra.storage import ObjectInfo, ObjectStoreAccess, Versioned, check_key, spool_folder

T = TypeVar("T")

# S3's bucket naming rules, simplified: lower case, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PRECONDITION = ("PreconditionFailed", "412")
_IN_FLIGHT = ("ConditionalRequestConflict", "409")
_MISSING = ("NoSuchKey", "404", "NotFound")
PART_SIZE = 64 * 1024 * 1024
"""Multipart upload part size: a big file never sits in memory more than a part at a time."""
_READ_BLOCK = 1 << 20


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix"); both validated."""
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"SCHEMAHUB_LAKE={url!r}: {bucket!r} is not a valid S3 bucket name")
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
    return bucket, prefix


class S3Storage:
    read_concurrency = 16  # small GETs are latency-bound: many in flight

    def __init__(self, url: str, aws: Aws) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.aws = aws
        self._s3 = aws.s3()
        self._where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def __repr__(self) -> str:
        return f"S3Storage({self._where!r})"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _call(self, fn: Callable[..., T], key: str | None, **kwargs: Any) -> T:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, key) from None

    def _error(self, exc: Exception, key: str | None) -> SchemahubError:
        what = self.url_for(key) if key else self._where
        return translate(exc, what=what, setting="SCHEMAHUB_LAKE",
                         missing=f"bucket {self.bucket!r} does not exist (create it, or fix the lake URL)")

    def check(self) -> None:
        """Fail fast on a missing bucket, refused credentials or an unreachable endpoint.

        A one-key listing of the lake's own prefix rather than HeadBucket: a least-privilege
        role may list only under its prefix (``s3:prefix`` condition), which HeadBucket,
        having no prefix, can never satisfy.
        """
        self._call(self._s3.list_objects_v2, None, Prefix=f"{self.prefix}/" if self.prefix else "", MaxKeys=1)

    # -- reads ---------------------------------------------------------------------------

    def read(self, key: str) -> bytes | None:
        found = self.read_versioned(key)
        return None if found is None else found.data

    def read_versioned(self, key: str) -> Versioned | None:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            return Versioned(response["Body"].read(), response["ETag"])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in _MISSING:
                return None
            raise self._error(exc, key) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, key) from None

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        if prefix:
            check_key(prefix.rstrip("/"))
        base = f"{self.prefix}/" if self.prefix else ""
        kwargs: dict[str, Any] = {"Prefix": base + prefix}
        if start_after:
            kwargs["StartAfter"] = self._key(start_after)
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **kwargs)
        strip = len(base)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][strip:], int(item["Size"]))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, prefix) from None

    # -- writes --------------------------------------------------------------------------

    def write(self, key: str, data: bytes) -> None:
        self._call(self._s3.put_object, key, Key=self._key(key), Body=data)

    def create(self, key: str, data: bytes) -> bool:
        try:
            self._conditional_put(key, data, None)
        except CommitConflict:
            return False
        return True

    def replace_if(self, key: str, data: bytes, expected_version: str | None) -> str:
        return self._conditional_put(key, data, expected_version)

    def _conditional_put(self, key: str, data: bytes, if_match: str | None) -> str:
        """PUT only over version ``if_match`` (an ETag), or only where nothing exists (None)."""
        for attempt in range(5):
            try:
                if if_match is None:
                    response = self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                                   IfNoneMatch="*")
                else:
                    response = self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                                   IfMatch=if_match)
                return str(response["ETag"])
            except botocore.exceptions.ClientError as exc:
                code = error_code(exc)
                if code in _IN_FLIGHT and attempt < 4:
                    time.sleep(0.05 * 2 ** attempt)  # another conditional write is landing: look again
                    continue
                if code in _PRECONDITION or code in _IN_FLIGHT or code in _MISSING:
                    raise CommitConflict(f"{self.url_for(key)} changed under us ({code}): another writer "
                                         "got there first") from None
                raise self._error(exc, key) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error(exc, key) from None
        raise AssertionError("unreachable")

    def delete(self, key: str) -> None:
        self._call(self._s3.delete_object, key, Key=self._key(key))

    # -- big objects ---------------------------------------------------------------------

    @contextlib.contextmanager
    def spool(self) -> Iterator[Path]:
        folder = spool_folder()
        path = folder / f"{processes.me()}~{uuid.uuid4().hex}.tmp"
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def create_file(self, key: str, path: Path) -> bool:
        """Create-only from a local file: one conditional PUT when small, else a multipart
        upload completed with ``If-None-Match: *`` (the first complete writer wins)."""
        size = path.stat().st_size
        if size <= PART_SIZE:
            with open(path, "rb") as fh:
                return self.create(key, fh.read())
        full = self._key(key)
        upload = self._call(self._s3.create_multipart_upload, key, Key=full)["UploadId"]
        try:
            parts: list[Any] = []
            with open(path, "rb") as fh:
                number = 1
                while block := fh.read(PART_SIZE):
                    etag = self._call(self._s3.upload_part, key, Key=full, UploadId=upload, PartNumber=number,
                                      Body=block)["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
                    number += 1
            try:
                self._s3.complete_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload,
                                                   MultipartUpload={"Parts": parts}, IfNoneMatch="*")
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) in _PRECONDITION or error_code(exc) in _IN_FLIGHT:
                    self._abort(full, upload)
                    return False
                raise self._error(exc, key) from None
        except BaseException:
            self._abort(full, upload)
            raise
        return True

    def _abort(self, full: str, upload: str) -> None:
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path | None]:
        """One streamed GET into the spool (never the whole object in memory)."""
        with self.spool() as path:
            try:
                response = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
                with open(path, "wb") as fh:
                    for block in response["Body"].iter_chunks(_READ_BLOCK):
                        fh.write(block)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) in _MISSING:
                    yield None
                    return
                raise self._error(exc, key) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error(exc, key) from None
            yield path

    def access(self) -> ObjectStoreAccess:
        """The endpoint and the credentials boto3 resolved, for delta-rs and DuckDB."""
        key, secret, token = self.aws.credentials()
        return ObjectStoreAccess(region=self.aws.region_name, key_id=key, secret=secret, token=token,
                                 endpoint_url=self.aws.endpoint_url)

