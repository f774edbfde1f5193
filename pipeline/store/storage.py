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

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError, PartialCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pipeline import faults
from pipeline.config import StoreConfig, split_s3_uri, split_store_uri
from pipeline.errors import (
    PipelineError,
    StoreAccessError,
    StoreNotFoundError,
    StoreRequestError,
    StoreUnavailableError,
    UsageError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION_CODES = {"412", "PreconditionFailed", "ConditionalRequestConflict"}
#: Error codes :meth:`Store.retrying` leaves as botocore's ``ClientError`` by default: its callers act on them
#: (a missing object is None, a failed condition is ``ObjectExistsError``); every other refusal becomes a
#: :class:`~pipeline.errors.StoreError` kind (see :func:`store_error`).
PASSTHROUGH_CODES = frozenset(_MISSING_CODES | _PRECONDITION_CODES)
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
        "403",
    }
)
_CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the store's Airflow connection)"
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
    try:
        return session.client("s3", endpoint_url=config.endpoint_url, config=botocfg)
    except ValueError as exc:  # botocore: "Invalid endpoint: ..."
        raise UsageError(
            f"object store endpoint {config.endpoint_url!r} is not a valid URL ({exc}): set AWS_ENDPOINT_URL (or the "
            "endpoint_url of the store's Airflow connection) to http(s)://HOST[:PORT]"
        ) from exc


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _client_error(exc: BaseException | None) -> ClientError | None:
    """The ``ClientError`` that ``exc`` is or wraps (boto3's ``S3UploadFailedError`` hides one in its context)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ClientError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _access_error(where: str, what: str, code: str, status: object) -> StoreAccessError:
    if code == "InvalidAccessKeyId":
        advice = "the store does not know this access key: check AWS_ACCESS_KEY_ID (or the connection's login)"
    elif code == "SignatureDoesNotMatch":
        advice = (
            "the secret key does not belong to the access key: check AWS_SECRET_ACCESS_KEY (or the password of the "
            "store's Airflow connection)"
        )
    elif code == "RequestTimeTooSkewed":
        advice = "this machine's clock differs too much from the store's: correct the clock (NTP) and rerun"
    elif code in {"ExpiredToken", "InvalidToken", "TokenRefreshRequired"}:
        advice = "the session token is expired or invalid: renew the credentials (AWS_SESSION_TOKEN) and rerun"
    elif code == "AccessDenied":
        advice = (
            "these keys may not do this: `cxr run` needs keys that may list, read and write the store (read-only "
            f"keys only list, show and verify releases); put the pipeline's keys in {_CREDENTIALS}"
        )
    else:  # a bare 403 (HEAD requests carry no error code): wrong key, wrong secret or no permission
        advice = f"the access key, its secret or its permissions are wrong: check {_CREDENTIALS}"
    return StoreAccessError(f"{where} refused {what} ({code or status}): {advice}")


def missing_bucket(endpoint: str | None, bucket: str, what: str) -> StoreNotFoundError:
    """The error for a bucket that does not exist."""
    return StoreNotFoundError(
        f"bucket {bucket!r} does not exist at {endpoint or 'AWS'} (while {what}): check the bucket in --store (or "
        "$CXR_STORE); `cxr run` creates a missing bucket when it starts, so a bucket that disappears during a run "
        "was deleted: rerun once it is back (a rerun resumes)"
    )


def store_error(exc: BaseException, endpoint: str | None, bucket: str, what: str) -> PipelineError | None:
    """The error kind a failed store request maps to, with the endpoint, bucket or key and what to do;
    None when ``exc`` is no refusal by the store (a bug, or a transient error :meth:`Store.retrying` handles).

    ``AccessDenied``, ``InvalidAccessKeyId``, ``SignatureDoesNotMatch`` and other 403s are
    :class:`StoreAccessError`; ``NoSuchBucket``, ``NoSuchKey`` and 404s :class:`StoreNotFoundError`;
    ``InvalidBucketName`` a :class:`UsageError`; missing keys :class:`StoreAccessError`; any other 4xx
    :class:`StoreRequestError`. None of them is retried: the same request would be refused again.
    """
    where = f"object store at {endpoint or 'AWS'}"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StoreAccessError(f"no keys for the {where} while {what} ({exc}): set {_CREDENTIALS}")
    error = _client_error(exc)
    if error is not None:
        return _refusal(error, endpoint, bucket, what)
    return StoreRequestError(f"{where} refused {what}: {exc}") if isinstance(exc, S3UploadFailedError) else None


def _refusal(error: ClientError, endpoint: str | None, bucket: str, what: str) -> PipelineError | None:
    where = f"object store at {endpoint or 'AWS'}"
    code = _code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    message = str(error.response.get("Error", {}).get("Message", "")) or str(status)
    if code in _ACCESS_CODES or status == 403:
        return _access_error(where, what, code, status)
    if code == "NoSuchBucket":
        return missing_bucket(endpoint, bucket, what)
    if code == "InvalidBucketName":
        return UsageError(
            f"{where} refused the bucket name {bucket!r} (InvalidBucketName) while {what}: choose a bucket named with "
            "3-63 lowercase letters, digits, dots and hyphens"
        )
    if code in _MISSING_CODES or code in {"NoSuchUpload", "NoSuchVersion"} or status == 404:
        return StoreNotFoundError(
            f"{where} has no such object while {what} ({code or status}): it was deleted, or the step that writes "
            "it did not finish; rerun (a rerun redoes what is missing)"
        )
    if isinstance(status, int) and 400 <= status < 500:
        return StoreRequestError(
            f"{where} refused {what} ({code or status}: {message}); the same request would be refused again: "
            "check the store location and the store's settings"
        )
    return None


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
        deadline, delay, attempts = time.monotonic() + budget, _FIRST_DELAY_S, 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not _transient(exc):
                    error = _client_error(exc)
                    if error is not None and _code(error) in passthrough:
                        raise
                    mapped = store_error(exc, self.config.endpoint_url, self.bucket, what)
                    if mapped is None:
                        raise
                    raise mapped from exc
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
            if _code(exc) == "403":  # a HEAD answer has no body: a listing's refusal says which key is wrong
                self._call(what, self.client.list_objects_v2, MaxKeys=1)
                raise _access_error(f"object store at {self.config.endpoint_url or 'AWS'}", what, "", 403) from exc
            if _code(exc) not in _MISSING_CODES | {"NoSuchBucket"}:
                raise
            return False
        return True

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
            if if_absent and _code(exc) in _PRECONDITION_CODES:
                raise ObjectExistsError(self.uri(rel)) from exc
            if if_match is not None and _code(exc) in _PRECONDITION_CODES | _MISSING_CODES:
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

    def get_tagged(self, rel: str) -> tuple[bytes, str] | None:
        """Download one small object with its ETag (for a later ``put_bytes(if_match=...)``); None when missing."""

        def read() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))
            return response["Body"].read(), str(response.get("ETag", "")).strip('"')

        try:
            return self.retrying(f"reading {self.uri(rel)}", read)
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise

    def open_stream(self, rel: str) -> IO[bytes]:
        """Return a streaming reader of one object."""
        response = self._call(f"reading {self.uri(rel)}", self.client.get_object, frozenset(), Key=self.key(rel))
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
