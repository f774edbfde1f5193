"""HTTP(S) sources: HEAD probes, index pages, ranged GETs that resume, and spooling for servers without Range.

Every response is checked: the status, ``Content-Range`` against the bytes asked for, and the validator
(ETag, else Last-Modified) against the one seen at discovery, so a file replaced mid-read is an error.
Archives are fetched as stored (``Accept-Encoding: identity``, never transparently gunzipped).
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urljoin, urlparse

import requests

from pipeline.errors import (
    BadDataError,
    LocalDiskError,
    SourceNotFoundError,
    SourceUnavailableError,
    local_disk_error,
)
from pipeline.ingest import remote
from pipeline.ingest.remote import (
    _TRANSIENT,
    CHUNK,
    LocalRanges,
    RemoteInfo,
    _Transient,
    fill,
    resume,
)
from pipeline.store import retry

log = logging.getLogger(__name__)

HTTP_TIMEOUT = (10.0, 60.0)  # connect, read
_IDENTITY = {"Accept-Encoding": "identity"}
_SPOOL_WARNED: set[str] = set()  # hosts already warned about (once per process)


@functools.lru_cache(maxsize=1)
def http_session() -> requests.Session:
    """One pooled session per process (thread-safe for our GET and HEAD use)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _validator(headers: requests.structures.CaseInsensitiveDict[str]) -> str:
    return str(headers.get("ETag") or headers.get("Last-Modified") or "")


def _check_status(url: str, status: int) -> None:
    if status in (404, 410):
        raise SourceNotFoundError(f"{url}: not found (HTTP {status})")
    if status == 429 or status >= 500:
        raise _Transient(f"HTTP {status}")
    if status >= 400:
        raise BadDataError(f"{url}: refused (HTTP {status}); check the URL and the server's access rules")


def _retrying_request(what: str, request: Callable[[], requests.Response]) -> requests.Response:
    def attempt() -> requests.Response:
        response = request()
        if response.status_code == 429 or response.status_code >= 500:
            response.close()
            raise _Transient(f"HTTP {response.status_code}")
        return response

    def give_up(exc: Exception, failed: retry.Attempts) -> SourceUnavailableError:
        return SourceUnavailableError(f"{what}: unreachable after {failed.failures} attempts ({exc})")

    return retry.call(attempt, remote.source_backoff(), lambda exc: isinstance(exc, _TRANSIENT), give_up)


def http_head(url: str) -> RemoteInfo | None:
    """Size and validator of one URL, or None when the server says it does not exist (any 4xx)."""
    session = http_session()
    response = _retrying_request(
        url, lambda: session.head(url, headers=_IDENTITY, allow_redirects=True, timeout=HTTP_TIMEOUT)
    )
    if response.status_code in (405, 501) or "Content-Length" not in response.headers:
        response = _retrying_request(url, lambda: _range_probe(url))
        response.close()
    if response.status_code >= 400:
        return None
    size = _total_size(url, response)
    return RemoteInfo(unquote(urlparse(url).path.rsplit("/", 1)[-1]), url, size, _validator(response.headers))


def _range_probe(url: str) -> requests.Response:
    headers = {**_IDENTITY, "Range": "bytes=0-0"}
    return http_session().get(url, headers=headers, stream=True, allow_redirects=True, timeout=HTTP_TIMEOUT)


def _total_size(url: str, response: requests.Response) -> int:
    content_range = response.headers.get("Content-Range", "")
    if response.status_code == 206 and "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    if "Content-Length" in response.headers:
        return int(response.headers["Content-Length"])
    raise BadDataError(f"{url}: the server sends no Content-Length, so a complete download cannot be verified")


def supports_ranges(url: str) -> bool:
    """Ask for one byte: a 206 answer means the server honours Range requests."""
    response = _retrying_request(url, lambda: _range_probe(url))
    response.close()
    return response.status_code == 206


_HREF = re.compile(r"""href\s*=\s*["']([^"'#?]+)["']""", re.IGNORECASE)


def http_index(base: str) -> list[str]:
    """File names linked from the page at ``base`` (as ``python -m http.server`` lists a folder); [] if none."""
    try:
        response = http_session().get(base, headers=_IDENTITY, timeout=HTTP_TIMEOUT)
    except _TRANSIENT as exc:
        raise SourceUnavailableError(f"source {base} unreachable: {exc}; check the URL and rerun") from exc
    if response.status_code != 200 or "html" not in response.headers.get("Content-Type", ""):
        return []
    names = []
    for href in _HREF.findall(response.text[: 4 << 20]):
        target = urljoin(base, href)
        if target.startswith(base) and "/" not in target[len(base) :].rstrip("/"):
            names.append(unquote(target[len(base) :]))
    return sorted(set(names))


class HttpRanges:
    """Ranged GETs of one URL; ``Content-Range`` and the validator are checked on every response."""

    def __init__(self, url: str, size: int, validator: str) -> None:
        self.location, self.size, self.validator = url, size, validator
        self.session = http_session()

    def _check(self, response: requests.Response, offset: int, end: int) -> None:
        _check_status(self.location, response.status_code)
        seen = _validator(response.headers)
        if self.validator and seen and seen != self.validator:
            raise BadDataError(f"{self.location}: the file changed while it was being read; rerun to pick it up")
        if response.status_code == 206:
            expected = f"bytes {offset}-{end - 1}/{self.size}"
            if response.headers.get("Content-Range", "") != expected:
                raise BadDataError(
                    f"{self.location}: asked for {expected}, server answered "
                    f"{response.headers.get('Content-Range')!r}; the file changed size? rerun"
                )
        elif not (offset == 0 and end == self.size):
            raise BadDataError(f"{self.location}: the server ignored a Range request (HTTP {response.status_code})")

    def _get_into(self, buf: bytearray, offset: int, end: int) -> None:
        headers = {**_IDENTITY, "Range": f"bytes={offset}-{end - 1}"}
        with self.session.get(self.location, headers=headers, stream=True, timeout=HTTP_TIMEOUT) as response:
            self._check(response, offset, end)
            start = len(buf)
            for chunk in response.raw.stream(CHUNK, decode_content=False):
                buf += chunk
            if len(buf) - start > end - offset:
                raise BadDataError(f"{self.location}: the server sent more bytes than asked for")
            if len(buf) - start < end - offset:
                raise _Transient(f"response ended after {len(buf) - start} of {end - offset} bytes")

    def read_range(self, start: int, length: int) -> bytes:
        """Read bytes ``[start, start + length)`` (clipped to the file's size)."""
        length = max(0, min(length, self.size - start))
        return fill(self.location, start, length, self._get_into)

    def close(self) -> None:
        """Nothing to release: the session is shared."""


def spool_http(info: RemoteInfo) -> LocalRanges:
    """Download a file from a server without Range support into a temporary file.

    A broken download is resumed by fetching the file again and skipping what is already on disk.
    """
    host = urlparse(info.location).netloc
    level = logging.INFO if host in _SPOOL_WARNED else logging.WARNING
    _SPOOL_WARNED.add(host)
    log.log(level, "%s: the server does not honour Range requests; spooling it to a temporary file", info.location)
    what = f"spooling {info.location} ({info.size} bytes) to a temporary file"
    try:
        handle = tempfile.NamedTemporaryFile(prefix="cxr-spool-", delete=False)  # noqa: SIM115 - closed below
    except OSError as exc:  # no writable temporary directory at all
        raise local_disk_error(exc, what) or LocalDiskError(
            f"{what}: no writable temporary directory ({exc}); point TMPDIR at a writable disk, then rerun"
        ) from exc
    path = Path(handle.name)
    try:
        with handle:
            resume(info.location, info.size, handle.tell, lambda offset: _stream_whole(info, offset, handle))
    except OSError as exc:
        path.unlink(missing_ok=True)
        disk = local_disk_error(exc, what, f"the temporary directory {path.parent}")
        if disk is None:
            raise
        raise disk from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return LocalRanges(path, info.size, delete_on_close=True)


def _stream_whole(info: RemoteInfo, offset: int, sink: IO[bytes]) -> None:
    """GET the whole file and write what lies beyond ``offset`` to ``sink``."""
    with http_session().get(info.location, headers=_IDENTITY, stream=True, timeout=HTTP_TIMEOUT) as response:
        _check_status(info.location, response.status_code)
        skip = offset
        for chunk in response.raw.stream(CHUNK, decode_content=False):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            sink.write(chunk[skip:])
            skip = 0
            if sink.tell() > info.size:
                raise BadDataError(f"{info.location}: longer than its Content-Length {info.size}")
    if sink.tell() < info.size:
        raise _Transient(f"response ended after {sink.tell()} of {info.size} bytes")
