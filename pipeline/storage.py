"""One storage code path: an ``s3://bucket/prefix`` store reached with boto3.

Every object is addressed by a key relative to the store's prefix. Uploads send their
SHA-256 so the store rejects corrupted bodies, and ``put_bytes(..., if_absent=True)``
uses the ``If-None-Match: *`` conditional write so two writers can never both create a key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pipeline import faults
from pipeline.config import StoreConfig
from pipeline.errors import StoreUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION_CODES = {"412", "PreconditionFailed", "ConditionalRequestConflict"}
#: How long (seconds) a store call keeps retrying an unreachable or failing (5xx) endpoint before giving up.
RETRY_BUDGET_ENV = "CXR_STORE_RETRY_S"
DEFAULT_RETRY_BUDGET_S = 120.0
_FIRST_DELAY_S, _MAX_DELAY_S = 0.5, 8.0
T = TypeVar("T")


def retry_budget() -> float:
    """Seconds a store call retries before :class:`StoreUnavailableError` (``$CXR_STORE_RETRY_S``, default 120)."""
    return float(os.environ.get(RETRY_BUDGET_ENV, DEFAULT_RETRY_BUDGET_S))


def _transient(exc: BaseException | None) -> bool:
    """Whether an error says the endpoint is down or overloaded (a retry may help), not that the request is wrong."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return isinstance(status, int) and status >= 500
    if isinstance(exc, S3UploadFailedError):
        return _transient(exc.__cause__ or exc.__context__) or " (5" in str(exc)
    return False


@dataclass(frozen=True)
class ObjectInfo:
    """A listed or inspected object."""

    key: str
    size: int
    etag: str


class ObjectExistsError(Exception):
    """A conditional create found the key already taken."""


def parse_store_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into bucket and prefix (without slashes at either end)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"store {uri!r} is not an s3://BUCKET[/PREFIX] URI")
    return parsed.netloc, parsed.path.strip("/")


@functools.lru_cache(maxsize=16)
def make_client(config: StoreConfig, max_pool: int = 32) -> S3Client:
    """Create (once per configuration and process) a boto3 S3 client with retries, timeouts and path-style
    addressing. Clients are thread-safe; creating one costs ~0.1 s of service-model loading, so it is cached.
    """
    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        region_name=config.region,
    )
    botocfg = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=max_pool,
        # Every upload carries a checksum header that the store verifies (SHA-256 or a part's CRC32) and the
        # signature covers; signing the payload too would hash every byte once more.
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client("s3", endpoint_url=config.endpoint_url, config=botocfg)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class Store:
    """Objects under one bucket and prefix."""

    def __init__(self, config: StoreConfig, client: S3Client | None = None) -> None:
        self.config = config
        self.bucket, self.prefix = parse_store_uri(config.uri)
        self.client = client or make_client(config)

    def key(self, rel: str) -> str:
        """Return the full object key of a store-relative path."""
        rel = rel.lstrip("/")
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def uri(self, rel: str) -> str:
        """Return the ``s3://`` URI of a store-relative path."""
        return f"s3://{self.bucket}/{self.key(rel)}"

    def retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one or more client calls), retrying transient failures with back-off for :func:`retry_budget`
        seconds, then raising :class:`StoreUnavailableError`; for callers that use ``self.client`` directly."""
        budget = retry_budget()
        deadline, delay, attempts = time.monotonic() + budget, _FIRST_DELAY_S, 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not _transient(exc):
                    raise
                attempts += 1
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(
                        f"object store at {self.config.endpoint_url or 'AWS'} unavailable while {what}: still failing "
                        f"after {attempts} attempts over {budget:.0f}s ({exc}); check that the endpoint is up, then "
                        f"rerun (a rerun resumes where it stopped; ${RETRY_BUDGET_ENV} sets the budget)"
                    ) from exc
                log.warning("object store unavailable while %s (%s); retrying in %.1fs", what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY_S)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        return self.retrying(what, lambda: fn(Bucket=self.bucket, **kwargs))

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""
        try:
            self._call(f"checking bucket {self.bucket}", self.client.head_bucket)
        except ClientError as exc:
            if _code(exc) not in _MISSING_CODES | {"NoSuchBucket"}:
                raise
            log.info("creating bucket %s", self.bucket)
            self._call(f"creating bucket {self.bucket}", self.client.create_bucket)

    def put_bytes(
        self,
        rel: str,
        data: bytes,
        *,
        if_absent: bool = False,
        content_type: str | None = None,
        sha256: bytes | None = None,
    ) -> str:
        """Upload ``data`` with its SHA-256 checksum; return the hex SHA-256.

        With ``if_absent`` the write only succeeds when the key does not exist yet,
        otherwise :class:`ObjectExistsError` is raised. Pass ``sha256`` (the raw digest) when the
        caller has hashed the bytes already, so they are not hashed again.
        """
        digest = sha256 or hashlib.sha256(data).digest()
        extra: dict[str, Any] = {"ChecksumSHA256": base64.b64encode(digest).decode()}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        if content_type:
            extra["ContentType"] = content_type
        faults.point("store.put")
        try:
            self._call(f"writing {self.uri(rel)}", self.client.put_object, Key=self.key(rel), Body=data, **extra)
        except ClientError as exc:
            if if_absent and _code(exc) in _PRECONDITION_CODES:
                raise ObjectExistsError(self.uri(rel)) from exc
            raise
        return digest.hex()

    def put_file(self, rel: str, path: Path, content_type: str | None = None) -> None:
        """Upload a local file (multipart when large)."""
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
        if content_type:
            extra["ContentType"] = content_type
        faults.point("store.put")
        self.retrying(
            f"writing {self.uri(rel)}",
            lambda: self.client.upload_file(str(path), self.bucket, self.key(rel), ExtraArgs=extra),
        )

    def get_bytes(self, rel: str) -> bytes:
        """Download one object whole (for small objects: manifests, images)."""

        def read() -> bytes:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"].read()
            return body

        return self.retrying(f"reading {self.uri(rel)}", read)

    def open_stream(self, rel: str) -> IO[bytes]:
        """Return a streaming reader of one object."""
        response = self._call(f"reading {self.uri(rel)}", self.client.get_object, Key=self.key(rel))
        stream: IO[bytes] = response["Body"]
        return stream

    def head(self, rel: str) -> ObjectInfo | None:
        """Return the object's size and ETag, or None when it does not exist."""
        try:
            response = self._call(f"inspecting {self.uri(rel)}", self.client.head_object, Key=self.key(rel))
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise
        return ObjectInfo(rel, int(response["ContentLength"]), str(response.get("ETag", "")).strip('"'))

    def exists(self, rel: str) -> bool:
        """Say whether the object exists."""
        return self.head(rel) is not None

    def list(self, rel_prefix: str) -> Iterator[ObjectInfo]:
        """List objects whose store-relative key starts with ``rel_prefix``."""
        yield from self.retrying(f"listing {self.uri(rel_prefix)}", lambda: self._list_all(rel_prefix))

    def _list_all(self, rel_prefix: str) -> tuple[ObjectInfo, ...]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.key(""))
        return tuple(
            ObjectInfo(item["Key"][strip:], int(item["Size"]), str(item.get("ETag", "")).strip('"'))
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(rel_prefix))
            for item in page.get("Contents", [])
        )

    def delete(self, rel: str) -> None:
        """Delete one object (missing objects are fine)."""
        self._call(f"deleting {self.uri(rel)}", self.client.delete_object, Key=self.key(rel))

    def delete_prefix(self, rel_prefix: str) -> int:
        """Delete every object under a prefix; return how many were deleted."""
        keys = [self.key(info.key) for info in self.list(rel_prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call("deleting objects", self.client.delete_objects, Delete={"Objects": batch, "Quiet": True})
        return len(keys)
