"""One storage code path: an ``s3://bucket/prefix`` store reached with boto3.

Every object is addressed by a key relative to the store's prefix. Uploads send their
SHA-256 so the store rejects corrupted bodies, and ``put_bytes(..., if_absent=True)``
uses the ``If-None-Match: *`` conditional write so two writers can never both create a key.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from pipeline import faults
from pipeline.config import StoreConfig, split_s3_uri, split_store_uri
from pipeline.errors import StoreNotFoundError, StoreUnavailableError
from pipeline.store import retry
from pipeline.store.client import make_client
from pipeline.store.refusals import (
    MISSING_CODES,
    PASSTHROUGH_CODES,
    PRECONDITION_CODES,
    access_error,
    client_error,
    endpoint_text,
    error_code,
    is_transient,
    missing_bucket,
    store_error,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

#: How long (seconds) a store call keeps retrying an unreachable or failing (5xx) endpoint before giving up.
RETRY_BUDGET_ENV = "CXR_STORE_RETRY_S"
DEFAULT_RETRY_BUDGET_S = 120.0
_FIRST_DELAY_S, _MAX_DELAY_S = 0.5, 8.0
T = TypeVar("T")
#: The checksum fields of a HeadObject answer (S3's names; a multipart object's value ends in ``-<parts>``).
CHECKSUM_FIELDS = ("ChecksumSHA256", "ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumCRC64NVME")


def retry_budget() -> float:
    """Seconds a store call retries before :class:`StoreUnavailableError` (``$CXR_STORE_RETRY_S``, default 120)."""
    return float(os.environ.get(RETRY_BUDGET_ENV, DEFAULT_RETRY_BUDGET_S))


def store_backoff(budget_s: float) -> retry.Backoff:
    """The back-off of a store call: 0.5 s doubling to 8 s, for ``budget_s`` seconds."""
    return retry.Backoff(_FIRST_DELAY_S, _MAX_DELAY_S, budget_s=budget_s)


@dataclass(frozen=True)
class ObjectInfo:
    """A listed or inspected object."""

    key: str
    size: int
    etag: str
    #: The checksums the store holds for the object (``{"ChecksumSHA256": ...}``, ``{"ChecksumCRC32": "...-N"}``
    #: for a multipart upload), as :meth:`Store.head` returns them with ``checksums=True``; empty otherwise.
    checksums: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


class ConditionFailedError(Exception):
    """A conditional write found the object not as the caller last saw it (``If-Match`` or ``If-None-Match``)."""


class ObjectExistsError(ConditionFailedError):
    """A conditional create found the key already taken."""


def parse_store_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key (no slash at either end).

    The rules live in :func:`pipeline.config.split_s3_uri`: a bad bucket name or path raises
    :class:`~pipeline.config.InvalidNameError`.
    """
    return split_s3_uri(uri)


class Store:
    """Objects under one bucket and prefix."""

    def __init__(self, config: StoreConfig, client: S3Client | None = None) -> None:
        self.config = config
        self.bucket, self.prefix = split_store_uri(config.uri)
        self.client = client or make_client(config)

    def key(self, rel: str) -> str:
        """Return the full object key of a store-relative path."""
        rel = rel.lstrip("/")
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def uri(self, rel: str) -> str:
        """Return the ``s3://`` URI of a store-relative path."""
        return f"s3://{self.bucket}/{self.key(rel)}"

    def retrying(self, what: str, fn: Callable[[], T], passthrough: frozenset[str] = PASSTHROUGH_CODES) -> T:
        """Run ``fn`` (one or more client calls), retrying transient failures with back-off for :func:`retry_budget`
        seconds, then raising :class:`StoreUnavailableError`; for callers that use ``self.client`` directly.

        A refusal (4xx) is raised at once as its error kind (:func:`store_error`: access, not found, bad request),
        except error codes in ``passthrough``, which stay botocore's ``ClientError`` for the caller to act on.
        """
        budget = retry_budget()

        def attempt() -> T:
            try:
                return fn()
            except Exception as exc:
                if is_transient(exc):
                    raise
                error = client_error(exc)
                if error is not None and error_code(error) in passthrough:
                    raise
                mapped = store_error(exc, self.config.endpoint_url, self.bucket, what)
                if mapped is None:
                    raise
                if isinstance(mapped, StoreNotFoundError) and self._bucket_gone():
                    mapped = missing_bucket(self.config.endpoint_url, self.bucket, what)
                raise mapped from exc

        def give_up(exc: Exception, attempts: retry.Attempts) -> StoreUnavailableError:
            return StoreUnavailableError(
                f"{endpoint_text(self.config.endpoint_url)} unavailable while {what}: still failing after "
                f"{attempts.total} attempts over {budget:.0f}s ({exc}); check that the endpoint is up, then "
                f"rerun (a rerun resumes where it stopped; ${RETRY_BUDGET_ENV} sets the budget)"
            )

        def warn(exc: Exception, delay: float) -> None:
            log.warning("object store unavailable while %s (%s); retrying in %.1fs", what, exc, delay)

        return retry.call(attempt, store_backoff(budget), is_transient, give_up, on_retry=warn)

    def _call(self, what: str, fn: Any, passthrough: frozenset[str] = PASSTHROUGH_CODES, **kwargs: Any) -> Any:
        return self.retrying(what, lambda: fn(Bucket=self.bucket, **kwargs), passthrough)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""
        if not self._bucket_exists():
            log.info("creating bucket %s", self.bucket)
            self._call(f"creating bucket {self.bucket}", self.client.create_bucket)

    def require_bucket(self) -> None:
        """Raise :class:`StoreNotFoundError` unless the bucket exists (for commands that only read the store)."""
        if not self._bucket_exists():
            raise missing_bucket(self.config.endpoint_url, self.bucket, f"checking bucket {self.bucket}")

    def _bucket_exists(self) -> bool:
        """Whether the bucket exists; a refusal is raised as its error kind, named by the store's error code."""
        what = f"checking bucket {self.bucket}"
        try:
            self._call(what, self.client.head_bucket, PASSTHROUGH_CODES | {"NoSuchBucket", "403"})
        except ClientError as exc:
            if error_code(exc) == "403":  # a HEAD answer has no body: a listing's refusal says which key is wrong
                self._call(what, self.client.list_objects_v2, MaxKeys=1)
                raise access_error(endpoint_text(self.config.endpoint_url), what, "", 403) from exc
            if error_code(exc) not in MISSING_CODES | {"NoSuchBucket"}:
                raise
            return False
        return True

    def _bucket_gone(self) -> bool:
        """Whether the bucket is missing now: a missing object may mean the whole bucket was deleted, which some
        stores answer with ``NoSuchKey`` (one request, no retries: the caller is already failing)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return error_code(exc) in MISSING_CODES | {"NoSuchBucket"}
        except Exception:  # the store went away as well: keep the error at hand
            return False
        return False

    def put_bytes(
        self,
        rel: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
        sha256: bytes | None = None,
    ) -> str:
        """Upload ``data`` with its SHA-256 checksum; return the hex SHA-256.

        With ``if_absent`` the write only succeeds when the key does not exist yet,
        otherwise :class:`ObjectExistsError` is raised. With ``if_match`` (an ETag from :meth:`get_tagged`)
        it only replaces that very version of the object, otherwise :class:`ConditionFailedError` is raised.
        Pass ``sha256`` (the raw digest) when the caller has hashed the bytes already, so they are not hashed again.
        """
        digest = sha256 or hashlib.sha256(data).digest()
        extra: dict[str, Any] = {"ChecksumSHA256": base64.b64encode(digest).decode()}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = f'"{if_match}"'
        if content_type:
            extra["ContentType"] = content_type
        faults.point("store.put")
        try:
            self._call(f"writing {self.uri(rel)}", self.client.put_object, Key=self.key(rel), Body=data, **extra)
        except ClientError as exc:
            if if_absent and error_code(exc) in PRECONDITION_CODES:
                raise ObjectExistsError(self.uri(rel)) from exc
            if if_match is not None and error_code(exc) in PRECONDITION_CODES | MISSING_CODES:
                raise ConditionFailedError(self.uri(rel)) from exc
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

        return self.retrying(f"reading {self.uri(rel)}", read, passthrough=frozenset())

    def get_range(self, rel: str, start: int, length: int) -> bytes:
        """Download ``length`` bytes of one object from ``start`` (one ranged GET; fewer at the object's end)."""

        def read() -> bytes:
            span = f"bytes={start}-{start + length - 1}"
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.key(rel), Range=span)["Body"].read()
            return body

        return self.retrying(f"reading {self.uri(rel)}", read, passthrough=frozenset()) if length > 0 else b""

    def get_tagged(self, rel: str) -> tuple[bytes, str] | None:
        """Download one small object with its ETag (for a later ``put_bytes(if_match=...)``); None when missing."""

        def read() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))
            return response["Body"].read(), str(response.get("ETag", "")).strip('"')

        try:
            return self.retrying(f"reading {self.uri(rel)}", read)
        except ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise

    def open_stream(self, rel: str) -> IO[bytes]:
        """Return a streaming reader of one object."""
        response = self._call(f"reading {self.uri(rel)}", self.client.get_object, frozenset(), Key=self.key(rel))
        stream: IO[bytes] = response["Body"]
        return stream

    def head(self, rel: str, *, checksums: bool = False) -> ObjectInfo | None:
        """Return the object's size and ETag, or None when it does not exist.

        With ``checksums`` the store is asked for the checksums it verified when the object was uploaded
        (``ChecksumMode=ENABLED``); they come back in :attr:`ObjectInfo.checksums` (empty when it holds none).
        """
        extra: dict[str, Any] = {"ChecksumMode": "ENABLED"} if checksums else {}
        try:
            response = self._call(f"inspecting {self.uri(rel)}", self.client.head_object, Key=self.key(rel), **extra)
        except ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise
        held = {name: str(response[name]) for name in CHECKSUM_FIELDS if response.get(name)}
        return ObjectInfo(rel, int(response["ContentLength"]), str(response.get("ETag", "")).strip('"'), held)

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
