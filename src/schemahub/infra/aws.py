"""AWS access for the cloud backends: one place that builds clients and translates errors.

Configuration is AWS's standard chain, read from the settings' environment: explicit
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, else
``AWS_PROFILE``, else what boto3 finds itself (config files, ECS task role, instance
role). ``AWS_ENDPOINT_URL`` points every service at an S3/DynamoDB/Glue-compatible
endpoint (MinIO, moto). Delta Lake (delta-rs) and DuckDB do not share boto3's chain, so
they are handed the credentials boto3 resolved, frozen at the moment they are opened
(``Storage.access()``).

Errors are translated here, once: a missing bucket or table, refused credentials and an
unreachable endpoint become ``ConfigError``s that name the setting to fix. Messages never
carry a credential or a signed URL.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from schemahub.errors import ConfigError, SchemahubError, StorageError

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client

_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
            "UnrecognizedClientException", "InvalidClientTokenId", "AccessDenied", "AccessDeniedException",
            "InvalidToken", "AuthFailure", "403"}  # 403: HEAD answers carry no error code
_CREDENTIAL_SETTINGS = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the task/instance role"


@dataclass(frozen=True)
class Aws:
    """Where and as whom to reach AWS (or an AWS-compatible endpoint)."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Aws:
        endpoint = env.get("AWS_ENDPOINT_URL") or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"AWS_ENDPOINT_URL={endpoint!r} must be an http:// or https:// URL")
        return cls(region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
                   endpoint_url=endpoint.rstrip("/") if endpoint else None,
                   profile=env.get("AWS_PROFILE") or None,
                   access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
                   secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
                   session_token=env.get("AWS_SESSION_TOKEN") or None)

    @functools.cached_property
    def _session(self) -> boto3.Session:
        import boto3
        import botocore.exceptions

        try:
            return boto3.Session(aws_access_key_id=self.access_key_id,
                                 aws_secret_access_key=self.secret_access_key,
                                 aws_session_token=self.session_token, region_name=self.region,
                                 profile_name=self.profile, botocore_session=_botocore_session())
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(f"AWS_PROFILE={self.profile!r}: no such profile in the AWS config files"
                              ) from None

    @property
    def region_name(self) -> str:
        return self._session.region_name or "us-east-1"

    def _client(self, service: str) -> Any:
        """A boto3 client with short timeouts and a few retries (a dead endpoint fails fast)."""
        from botocore.config import Config

        config = Config(connect_timeout=3, read_timeout=30, retries={"mode": "standard", "max_attempts": 3},
                        max_pool_connections=32)
        with _CLIENT_LOCK:  # creating clients from one session is not thread-safe
            return self._session.client(service, region_name=self.region_name,  # type: ignore[call-overload]
                                        endpoint_url=self.endpoint_url, config=config)

    def s3(self) -> S3Client:
        return cast("S3Client", self._client("s3"))

    def dynamodb(self) -> DynamoDBClient:
        return cast("DynamoDBClient", self._client("dynamodb"))

    def glue(self) -> GlueClient:
        return cast("GlueClient", self._client("glue"))

    def credentials(self) -> tuple[str, str, str | None]:
        """Key id, secret and session token as resolved now (they may rotate: ask again later)."""
        found = self._session.get_credentials()
        if found is None:
            raise ConfigError(f"no AWS credentials found: set {_CREDENTIAL_SETTINGS}")
        frozen = found.get_frozen_credentials()
        if not frozen.access_key or not frozen.secret_key:
            raise ConfigError(f"incomplete AWS credentials: set {_CREDENTIAL_SETTINGS}")
        return frozen.access_key, frozen.secret_key, frozen.token


_CLIENT_LOCK = threading.Lock()


def _botocore_session() -> Any:
    """A fresh botocore session that shares one loader of AWS's service descriptions with every
    other: each session would otherwise parse the S3 model and the endpoint rules (megabytes of
    JSON, ~0.1 s) again, and a process that opens a lake per product or per test does it often."""
    import botocore.loaders
    import botocore.session

    global _LOADER
    with _LOADER_LOCK:  # not _CLIENT_LOCK: a client's first use of ``_session`` holds that one
        if _LOADER is None:
            _LOADER = botocore.loaders.create_loader()
        session = botocore.session.Session()
        session.register_component("data_loader", _LOADER)
        return session


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translate(exc: Exception, *, what: str, setting: str, missing: str | None = None) -> SchemahubError:
    """One botocore failure as a SchemaHub error naming the setting to fix.

    ``what`` is the resource (``s3://bucket/prefix``); ``missing`` the message when the
    resource does not exist.
    """
    import botocore.exceptions

    code = error_code(exc)
    if code in ("NoSuchBucket", "ResourceNotFoundException", "EntityNotFoundException", "404") and missing:
        return ConfigError(f"{setting}: {missing}")
    if code in _REFUSED or isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError(f"{setting}: AWS refused the credentials for {what} ({code or 'no credentials'}); "
                           f"check {_CREDENTIAL_SETTINGS}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
        return ConfigError(f"{setting}: cannot reach the AWS endpoint for {what} "
                           f"({type(exc).__name__}); check AWS_ENDPOINT_URL, AWS_REGION and the network")
    if isinstance(exc, botocore.exceptions.ClientError):
        return StorageError(f"{what}: AWS answered {code}")
    return StorageError(f"{what}: {type(exc).__name__}")
