"""Read-only access to source files on a local disk or an S3 prefix (HTTP(S): :mod:`pipeline.ingest.remote_http`).

Every file is read through a :class:`RangeSource`: ``read_range(start, length)`` returns exactly those
bytes. Remote reads are ranged GETs that retry with back-off on connection errors and resume from the
byte where a broken response stopped, so a flaky link costs a retry, never a restart. Each response is
checked against the file's validator (S3 ``If-Match`` on the ETag; HTTP ETag or Last-Modified, and
``Content-Range``), so a file that changes while it is read is an error, never a silent mix of versions.

Credentials and endpoint of ``s3://`` sources come from :func:`pipeline.config.source_store_config`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import requests
import urllib3.exceptions
from botocore import exceptions as boto_exc

from pipeline.config import StoreConfig, source_store_config
from pipeline.errors import BadDataError, SourceNotFoundError, SourceUnavailableError
from pipeline.store import retry
from pipeline.store.client import make_client
from pipeline.store.storage import parse_store_uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRY_ATTEMPTS = 8  # consecutive failures without progress before giving up
BACKOFF_FIRST_S = 0.2
BACKOFF_CAP_S = 10.0


class _Transient(Exception):
    """A response that ended early or a server-side error: retry from where it stopped."""


_TRANSIENT: tuple[type[BaseException], ...] = (
    _Transient,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    boto_exc.ConnectionError,
    boto_exc.HTTPClientError,
    boto_exc.IncompleteReadError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class RemoteInfo:
    """A file found in a source: where it is, its size and a validator (ETag or Last-Modified)."""

    name: str
    location: str
    size: int
    validator: str


class RangeSource(Protocol):
    """Random access to one file's bytes."""

    location: str
    size: int

    def read_range(self, start: int, length: int) -> bytes:
        """Return exactly ``length`` bytes from ``start`` (fewer only at the end of the file)."""
        ...

    def close(self) -> None:
        """Release what the source holds (a spooled temporary file)."""
        ...


def is_s3(location: str) -> bool:
    """True for ``s3://`` locations."""
    return location.startswith("s3://")


def is_http(location: str) -> bool:
    """True for ``http://`` and ``https://`` locations."""
    return location.startswith(("http://", "https://"))


def source_backoff() -> retry.Backoff:
    """Back-off of source reads: ``BACKOFF_FIRST_S`` doubling to ``BACKOFF_CAP_S``, ``RETRY_ATTEMPTS`` in a row."""
    return retry.Backoff(BACKOFF_FIRST_S, BACKOFF_CAP_S, attempts=RETRY_ATTEMPTS)


def resume(what: str, end: int, position: Callable[[], int], attempt: Callable[[int], None]) -> None:
    """Call ``attempt(offset)`` until ``position()`` reaches ``end``, backing off after transient errors.

    An attempt writes what arrives (so ``position()`` grows) and may fail part-way; the next attempt asks
    for the rest only. The failure counter resets whenever an attempt made progress.
    """
    failures = retry.Attempts(source_backoff())
    while position() < end:
        before = position()
        try:
            attempt(before)
            if position() == before:
                raise _Transient("empty response")
        except _TRANSIENT as exc:
            if position() > before:
                failures.progressed()
            delay = failures.failed()
            if delay is None:
                raise SourceUnavailableError(
                    f"{what}: {failures.failures} attempts in a row failed at byte {position()} ({exc}); "
                    "check the server or network and rerun (finished work is kept)"
                ) from exc
            log.warning("%s: %s at byte %s; retrying in %.1f s", what, exc, position(), delay)
            time.sleep(delay)


def fill(what: str, start: int, length: int, get_into: Callable[[bytearray, int, int], None]) -> bytes:
    """Fetch ``length`` bytes from ``start`` with ``get_into(buf, offset, end)``, resuming after failures."""
    buf = bytearray()
    resume(what, start + length, lambda: start + len(buf), lambda offset: get_into(buf, offset, start + length))
    return bytes(buf)


# --- local files ---------------------------------------------------------------------------------


class LocalRanges:
    """A local file read with ``pread`` (thread-safe, no shared file position)."""

    def __init__(self, path: str | Path, size: int | None = None, *, delete_on_close: bool = False) -> None:
        self.location = str(path)
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size if size is None else size
        self._delete = delete_on_close

    def read_range(self, start: int, length: int) -> bytes:
        """Read from the file at an offset."""
        return os.pread(self._fd, length, start)

    def close(self) -> None:
        """Close the descriptor (and remove a spooled copy)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._delete:
                Path(self.location).unlink(missing_ok=True)


# --- S3 ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _s3_client(config: StoreConfig) -> S3Client:
    return make_client(config, max_pool=16)


def s3_client() -> S3Client:
    """The (cached) client for ``s3://`` sources."""
    return _s3_client(source_store_config("s3://source"))


def _s3_error(what: str, exc: boto_exc.ClientError) -> Exception:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}:
        return SourceNotFoundError(f"{what}: not found ({code})")
    if code in {"PreconditionFailed", "412"}:
        return BadDataError(f"{what}: the file changed while it was being read; rerun to pick up the new version")
    if isinstance(status, int) and status >= 500:
        return _Transient(f"server error {status} ({code})")
    return BadDataError(f"{what}: refused ({code}); check the source credentials (AWS_* variables)")


def s3_list(uri: str) -> list[RemoteInfo]:
    """The files directly under an ``s3://bucket/prefix`` (like a directory listing)."""
    bucket, prefix = parse_store_uri(uri)
    base = f"{prefix}/" if prefix else ""
    found: list[RemoteInfo] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base, Delimiter="/"):
            for item in page.get("Contents", []):
                name = item["Key"][len(base) :]
                etag = str(item.get("ETag", "")).strip('"')
                found.append(RemoteInfo(name, f"s3://{bucket}/{item['Key']}", int(item["Size"]), etag))
    except boto_exc.ClientError as exc:
        error = _s3_error(f"listing source {uri}", exc)
        if isinstance(error, _Transient):
            raise SourceUnavailableError(f"listing source {uri}: {error}; rerun later") from exc
        raise error from exc
    except _TRANSIENT as exc:
        raise SourceUnavailableError(f"source {uri} unreachable: {exc}; check the endpoint and rerun") from exc
    return found


def s3_head(uri: str) -> RemoteInfo | None:
    """Size and ETag of one ``s3://`` object, or None when it does not exist."""
    bucket, key = parse_store_uri(uri)
    try:
        response = s3_client().head_object(Bucket=bucket, Key=key)
    except boto_exc.ClientError as exc:
        error = _s3_error(f"reading {uri}", exc)
        if isinstance(error, SourceNotFoundError):
            return None
        raise error from exc
    except _TRANSIENT as exc:
        raise SourceUnavailableError(f"source {uri} unreachable: {exc}; check the endpoint and rerun") from exc
    etag = str(response.get("ETag", "")).strip('"')
    return RemoteInfo(key.rsplit("/", 1)[-1], uri, int(response["ContentLength"]), etag)


class S3Ranges:
    """Ranged GETs of one S3 object, pinned to its ETag with ``If-Match``."""

    def __init__(self, uri: str, size: int, etag: str) -> None:
        self.location, self.size, self.etag = uri, size, etag
        self.bucket, self.key = parse_store_uri(uri)
        self.client = s3_client()

    def _get_into(self, buf: bytearray, offset: int, end: int) -> None:
        extra: dict[str, Any] = {"IfMatch": f'"{self.etag}"'} if self.etag else {}
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={offset}-{end - 1}", **extra
            )
            for chunk in response["Body"].iter_chunks(CHUNK):
                buf += chunk
        except boto_exc.ClientError as exc:
            raise _s3_error(f"reading {self.location}", exc) from exc

    def read_range(self, start: int, length: int) -> bytes:
        """Read bytes ``[start, start + length)`` (clipped to the object's size)."""
        length = max(0, min(length, self.size - start))
        return fill(self.location, start, length, self._get_into)

    def close(self) -> None:
        """Nothing to release: the client is shared."""
