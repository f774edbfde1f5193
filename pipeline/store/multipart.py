"""A write-only file object that streams into one S3 object as a multipart upload.

Writers (``tarfile``, ``pyarrow.parquet.ParquetWriter``) write into it as if it were a local file; every
``part_size`` bytes become one part uploaded in the background while the writer goes on, so uploading
overlaps producing. Memory stays bounded (the current part plus ``max_inflight`` parts being sent), and the part
buffers are reused (:class:`PartBuffers`): written bytes are copied once, into memory already mapped. The
SHA-256 of the whole object (and its MD5 when asked for: WebDataset indexes list it) is computed part by
part in a thread of its own, off the writer's thread; each part carries a CRC32 checksum that the store
verifies (a quarter of the CPU of a Content-MD5), and the result records the composite CRC32 the store then
holds for the object (:func:`composite_crc32`), so publishing can check the object from its metadata alone. An
object smaller than one part is sent with a single PUT (the store holds its SHA-256). On error the upload is
aborted: nothing partial ever becomes visible under the key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

from pipeline.store.storage import Store

try:  # ISA-L's CRC-32 (the same values) is several times as fast as zlib's
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - a reader-only install
    _crc32 = zlib.crc32

log = logging.getLogger(__name__)

PART_SIZE = 16 << 20  # S3 parts must be >= 5 MiB except the last
#: The key a written file's entry (a unit result's ``files``) keeps :attr:`Uploaded.crc32` under.
UPLOAD_CRC32 = "upload_crc32"


@dataclass(frozen=True)
class Uploaded:
    """What was written: the object's store-relative key, size and digests (``md5`` None when not asked for).

    ``crc32`` is the composite checksum of a multipart upload as the store reports it (``<base64>-<parts>``,
    S3's ``ChecksumCRC32`` of a ``COMPOSITE`` object); None for a single PUT, whose checksum is its SHA-256.
    """

    rel: str
    size: int
    sha256: str
    md5: str | None
    crc32: str | None = None


def crc32_b64(body: bytes | bytearray) -> str:
    """The base64 big-endian CRC32 that S3's ``ChecksumCRC32`` fields carry."""
    return base64.b64encode(_crc32(body).to_bytes(4, "big")).decode()


def composite_crc32(part_crcs: list[str]) -> str:
    """The ``ChecksumCRC32`` S3 gives a multipart object from its parts' CRC32s (base64, in part order): the
    CRC32 of the parts' raw checksums end to end, then ``-<number of parts>``."""
    raw = b"".join(base64.b64decode(crc) for crc in part_crcs)
    return f"{crc32_b64(raw)}-{len(part_crcs)}"


class PartBuffers:
    """A process-wide free list of part buffers (``bytearray`` of one part's size), so that writing a part copies
    its bytes into pages already mapped instead of new ones: a fresh 16 MiB buffer per part, and a second copy of it
    to hand to the upload, cost two page faults per 4 KiB written (a fifth of a conversion's CPU went to page faults).
    At most ``keep`` buffers are kept; a buffer goes back only once its upload and its hashing are done."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes (its content is whatever it held before)."""
        with self._lock:
            for at, buffer in enumerate(self._free):
                if len(buffer) == size:
                    return self._free.pop(at)
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Return a buffer no one uses any more (one already given back is not kept twice)."""
        with self._lock:
            if len(self._free) < self.keep and all(kept is not buffer for kept in self._free):
                self._free.append(buffer)

    def clear(self) -> None:
        """Drop the kept buffers (their memory goes back to the system)."""
        with self._lock:
            self._free.clear()


#: The buffers every writer of this process shares: a tar shard and a Parquet file are written at once, each with
#: the part being filled and up to ``max_inflight`` (3) parts in flight.
PARTS = PartBuffers(keep=8)


class MultipartWriter(io.RawIOBase):
    """Stream bytes into ``store``'s object ``rel``; use as a context manager, read the result after."""

    def __init__(
        self, store: Store, rel: str, part_size: int = PART_SIZE, max_inflight: int = 3, *, md5: bool = True
    ) -> None:
        super().__init__()
        self.store, self.rel, self.part_size = store, rel, part_size
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="part")
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest")  # one thread: parts in order
        self._inflight: deque[Future[dict[str, Any]]] = deque()
        self._limit = max_inflight
        self._buffer: bytearray | None = None  # the part being filled (from PARTS), ``_fill`` bytes of it so far
        self._fill = 0
        self._parts: list[Any] = []  # CompletedPartTypeDef dicts
        self._upload_id: str | None = None
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._size = 0
        self.result: Uploaded | None = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        self._size += size
        start = 0
        while start < size:
            if self._buffer is None:
                self._buffer, self._fill = PARTS.take(self.part_size), 0
            take = min(self.part_size - self._fill, size - start)
            self._buffer[self._fill : self._fill + take] = view[start : start + take]
            self._fill += take
            start += take
            if self._fill == self.part_size:
                self._send_full()
        return size

    def _send_full(self) -> None:
        """Hash and upload the full part buffer; it goes back to :data:`PARTS` when both are done."""
        assert self._buffer is not None
        body, self._buffer = self._buffer, None
        hashed = self._digest(body)
        sent = self._send(body)
        lock, left = threading.Lock(), [2]

        def done(_: Future[Any]) -> None:  # runs in the hasher's and the uploader's threads, maybe at once
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last and not sent.cancelled() and not hashed.cancelled():
                PARTS.give(body)

        for future in (hashed, sent):
            future.add_done_callback(done)

    def _rest(self) -> bytes:
        """The bytes of the part not yet full (a copy); its buffer goes back."""
        if self._buffer is None:
            return b""
        rest = bytes(memoryview(self._buffer)[: self._fill])
        PARTS.give(self._buffer)
        self._buffer, self._fill = None, 0
        return rest

    def _digest(self, body: bytes | bytearray) -> Future[None]:
        """Queue ``body`` (the next bytes of the object) for hashing; hashlib releases the GIL meanwhile. The
        future is that of the last digest queued (one thread: it runs after the others)."""
        hashed = self._hasher.submit(self._sha256.update, body)
        if self._md5 is not None:
            hashed = self._hasher.submit(self._md5.update, body)
        return hashed

    def _send(self, body: bytes | bytearray) -> Future[dict[str, Any]]:
        if self._upload_id is None:
            created = self.store.retrying(
                f"starting the upload of {self.store.uri(self.rel)}",
                lambda: self.store.client.create_multipart_upload(
                    Bucket=self.store.bucket, Key=self.store.key(self.rel), ChecksumAlgorithm="CRC32"
                ),
            )
            self._upload_id = created["UploadId"]
        while len(self._inflight) >= self._limit:
            self._parts.append(self._inflight.popleft().result())
        sent = self._pool.submit(self._upload_part, len(self._parts) + len(self._inflight) + 1, body)
        self._inflight.append(sent)
        return sent

    def _upload_part(self, number: int, body: bytes | bytearray) -> dict[str, Any]:
        crc = crc32_b64(body)
        response = self.store.retrying(
            f"uploading part {number} of {self.store.uri(self.rel)}",
            lambda: self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.store.key(self.rel),
                UploadId=str(self._upload_id),
                PartNumber=number,
                Body=cast(bytes, body),  # a reused part buffer: botocore sends any bytes-like body
                ChecksumCRC32=crc,
            ),
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": crc}

    def _finish(self) -> None:
        rest = self._rest()
        self._digest(rest)
        self._hasher.submit(int).result()  # every queued update has run
        crc32 = None
        if self._upload_id is None:
            self.store.put_bytes(self.rel, rest, sha256=self._sha256.digest())
        else:
            if rest:
                self._send(rest)
            while self._inflight:
                self._parts.append(self._inflight.popleft().result())
            upload_id, parts = self._upload_id, sorted(self._parts, key=lambda p: p["PartNumber"])
            self.store.retrying(
                f"completing the upload of {self.store.uri(self.rel)}",
                lambda: self.store.client.complete_multipart_upload(
                    Bucket=self.store.bucket,
                    Key=self.store.key(self.rel),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
            crc32 = composite_crc32([part["ChecksumCRC32"] for part in parts])
        md5 = self._md5.hexdigest() if self._md5 is not None else None
        self.result = Uploaded(self.rel, self._size, self._sha256.hexdigest(), md5, crc32)

    def _abort(self) -> None:
        for future in self._inflight:
            future.cancel()
        if self._upload_id is not None:
            try:
                self.store.client.abort_multipart_upload(
                    Bucket=self.store.bucket, Key=self.store.key(self.rel), UploadId=self._upload_id
                )
            except Exception as exc:  # best effort: the error that made us abort is the one to report
                log.warning("could not abort the upload of %s (%s)", self.store.uri(self.rel), exc)
                return
            log.warning("aborted the upload of %s", self.store.uri(self.rel))

    def finish(self) -> Uploaded:
        """Send what is left and complete the object; return its size and digests."""
        try:
            self._finish()
        finally:
            self._stop_threads()
        assert self.result is not None
        return self.result

    def abort(self) -> None:
        """Give up: abort the multipart upload so nothing appears under the key."""
        try:
            self._abort()
        finally:
            self._stop_threads()

    def _stop_threads(self) -> None:
        for pool in (self._pool, self._hasher):
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> MultipartWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Complete the object (unless :meth:`finish` did already), or abort it on error (unless it is complete)."""
        try:
            if self.result is not None:
                return
            if kind is None:
                self.finish()
            else:
                self.abort()
        finally:
            super().close()
