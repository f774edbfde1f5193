"""A write-only file object that streams into one S3 object as a multipart upload.

Writers (``tarfile``, ``pyarrow.parquet.ParquetWriter``) write into it as if it were a local file; every
``part_size`` bytes become one part uploaded in the background while the writer goes on, so uploading
overlaps producing. Memory stays bounded (the current part plus ``max_inflight`` parts being sent). The
SHA-256 and MD5 of the whole object are computed on the way through; each part carries its Content-MD5.
An object smaller than one part is sent with a single PUT. On error the upload is aborted: nothing partial
ever becomes visible under the key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pipeline.storage import Store

log = logging.getLogger(__name__)

PART_SIZE = 16 << 20  # S3 parts must be >= 5 MiB except the last


@dataclass(frozen=True)
class Uploaded:
    """What was written: the object's store-relative key, size and digests."""

    rel: str
    size: int
    sha256: str
    md5: str


class MultipartWriter(io.RawIOBase):
    """Stream bytes into ``store``'s object ``rel``; use as a context manager, read the result after."""

    def __init__(self, store: Store, rel: str, part_size: int = PART_SIZE, max_inflight: int = 3) -> None:
        super().__init__()
        self.store, self.rel, self.part_size = store, rel, part_size
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="part")
        self._inflight: deque[Future[dict[str, Any]]] = deque()
        self._limit = max_inflight
        self._buffer = bytearray()
        self._parts: list[Any] = []  # CompletedPartTypeDef dicts
        self._upload_id: str | None = None
        self._sha256, self._md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        self._size = 0
        self.result: Uploaded | None = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._sha256.update(view)
        self._md5.update(view)
        self._buffer += view
        self._size += len(view)
        while len(self._buffer) >= self.part_size:
            self._send(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return len(view)

    def _send(self, body: bytes) -> None:
        if self._upload_id is None:
            created = self.store.retrying(
                f"starting the upload of {self.store.uri(self.rel)}",
                lambda: self.store.client.create_multipart_upload(
                    Bucket=self.store.bucket, Key=self.store.key(self.rel)
                ),
            )
            self._upload_id = created["UploadId"]
        while len(self._inflight) >= self._limit:
            self._parts.append(self._inflight.popleft().result())
        self._inflight.append(self._pool.submit(self._upload_part, len(self._parts) + len(self._inflight) + 1, body))

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        response = self.store.retrying(
            f"uploading part {number} of {self.store.uri(self.rel)}",
            lambda: self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.store.key(self.rel),
                UploadId=str(self._upload_id),
                PartNumber=number,
                Body=body,
                ContentMD5=md5,
            ),
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _finish(self) -> None:
        if self._upload_id is None:
            self.store.put_bytes(self.rel, bytes(self._buffer), sha256=self._sha256.digest())
        else:
            if self._buffer:
                self._send(bytes(self._buffer))
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
        self._buffer.clear()
        self.result = Uploaded(self.rel, self._size, self._sha256.hexdigest(), self._md5.hexdigest())

    def _abort(self) -> None:
        for future in self._inflight:
            future.cancel()
        if self._upload_id is not None:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.store.key(self.rel), UploadId=self._upload_id
            )
            log.warning("aborted the upload of %s", self.store.uri(self.rel))

    def finish(self) -> Uploaded:
        """Send what is left and complete the object; return its size and digests."""
        try:
            self._finish()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        assert self.result is not None
        return self.result

    def abort(self) -> None:
        """Give up: abort the multipart upload so nothing appears under the key."""
        try:
            self._abort()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> MultipartWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.finish()
            else:
                self.abort()
        finally:
            super().close()
