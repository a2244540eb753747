"""Lakes for tests: a local folder, or an S3 bucket + DynamoDB lock table on a real moto server.

The moto server is a separate process speaking the real S3/DynamoDB/Glue HTTP protocols
on loopback (``moto_server``). CI starts one and exports ``SCHEMAHUB_TEST_MOTO_URL``;
otherwise the first test that needs it starts one for the whole session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from schemahub.infra.storage import LocalStorage, Storage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

# Fake credentials for moto; the tests grep logs for them, so they must never be printed.
TEST_KEY_ID = "AKIATESTSCHEMAHUB0001"
TEST_SECRET = "schemahub-test-secret-never-logged-0001"


@dataclass(frozen=True)
class LakeRef:
    """Where a test's lake lives, and the environment that reaches it."""

    url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "s3" if self.url.startswith("s3://") else "local"

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:  # a local lake can be used where a path is expected
        assert self.kind == "local", "an S3 lake has no local path"
        return self.url

    def storage(self) -> Storage:
        """The lake's storage, opened without checking or creating anything."""
        if self.kind == "local":
            return LocalStorage(self.url)
        from schemahub.infra.aws import Aws
        from schemahub.infra.s3 import S3Storage

        return S3Storage(self.url, Aws.from_env({**os.environ, **self.env}))

    def child(self, name: str) -> LakeRef:
        """Another lake beside this one (a second lake of the same kind)."""
        return LakeRef(f"{self.url.rstrip('/')}/{name}", self.env)


LakeLike = Path | LakeRef


def as_lake(lake: LakeLike | str) -> LakeRef:
    return lake if isinstance(lake, LakeRef) else LakeRef(str(lake))


class MotoServer:
    """``moto_server`` in its own process (it must not share the tests' GIL), with S3's
    conditional writes made atomic (tests/moto_server.py explains why)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, str(Path(__file__).with_name("moto_server.py")), "-H", "127.0.0.1", "-p",
                   str(port)]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env={**os.environ, **(env or {})})
        wait_until_up(self.url, self._proc)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=30)


def wait_until_up(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    """Poll the server until it answers (a readiness check, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            httpx.get(f"{url}/moto-api/", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"moto_server at {url} did not come up within {timeout:.0f}s")


def aws_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": TEST_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEST_SECRET, "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint}


def _client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",  # type: ignore[call-overload]
                        aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET)


def s3_client(endpoint: str) -> S3Client:
    return _client("s3", endpoint)  # type: ignore[no-any-return]


def dynamodb_client(endpoint: str) -> DynamoDBClient:
    return _client("dynamodb", endpoint)  # type: ignore[no-any-return]


def create_lock_table(endpoint: str, name: str) -> None:
    from schemahub.cloud import lock_table_definition

    dynamodb_client(endpoint).create_table(**lock_table_definition(name))


def new_s3_lake(endpoint: str) -> LakeRef:
    """A fresh bucket and lock table: no test sees another's objects or leases."""
    suffix = uuid.uuid4().hex[:10]
    bucket, table = f"lake-{suffix}", f"locks-{suffix}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    create_lock_table(endpoint, table)
    return LakeRef(f"s3://{bucket}/data", {**aws_env(endpoint), "SCHEMAHUB_LOCKS": f"dynamodb://{table}"})
