"""A seekable, read-only file object over a :class:`~pipeline.ingest.remote.RangeSource`, hashing as it goes.

Reads are served from aligned blocks (8 MB by default) fetched with one ranged read each; while a file
is read front to back the next block is fetched in the background, so a zip read member after member
or a tar.gz read as a stream costs few, large requests. At most a handful of blocks are held at once.

The file's SHA-256 (and MD5 when asked for) is computed from the blocks as they arrive, in file order,
in a thread of its own: a zip whose central directory is read first still needs no second pass, and
:meth:`RangeFile.digests` only fetches the parts that were never read (for a tar, the end padding).
"""

from __future__ import annotations

import errno
import hashlib
import io
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.ingest.remote import RangeSource

BLOCK_SIZE = 8 << 20
_CACHED_BLOCKS = 3  # the current block, the one before (members straddle blocks), the zip directory
_PARKED_BLOCKS = 4  # blocks read ahead of the hashing position, kept until hashing reaches them
_HASH_QUEUE = 3  # blocks waiting for the hashing thread before reads wait for it


@dataclass(frozen=True)
class Digests:
    """Whole-file digests."""

    size: int
    sha256: str
    md5: str | None


class _InOrderHash:
    """Hashes blocks in file order; blocks arriving early are parked (a few) until their turn."""

    def __init__(self, md5: bool) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.offset = 0
        self.parked: dict[int, bytes] = {}

    def feed(self, start: int, data: bytes) -> None:
        if start > self.offset:
            if len(self.parked) < _PARKED_BLOCKS:
                self.parked[start] = data
            return
        if start + len(data) <= self.offset:
            return
        self._update(data[self.offset - start :])
        while self.offset in self.parked:
            self._update(self.parked.pop(self.offset))

    def _update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)
        self.offset += len(data)


class RangeFile(io.RawIOBase):
    """Seekable binary reader of one source file (local, S3 or HTTP)."""

    def __init__(
        self, source: RangeSource, *, block_size: int = BLOCK_SIZE, md5: bool = False, prefetch: bool = True
    ) -> None:
        super().__init__()
        self.source, self.name, self.size = source, source.location, source.size
        self.block_size = block_size
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._last_block = -2
        self._ahead: tuple[int, Future[bytes]] | None = None
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if prefetch else None
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="hash")
        self._hash = _InOrderHash(md5)
        self._hash_slots = threading.BoundedSemaphore(_HASH_QUEUE)

    # io.RawIOBase ------------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, f"{self.name}: negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes (all that is left when negative); short only at the end of the file."""
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        parts = []
        while self._pos < end:
            index, within = divmod(self._pos, self.block_size)
            block = self._block(index)
            part = block[within : within + end - self._pos]
            if not part:
                break
            parts.append(part)
            self._pos += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        if self._fetcher is not None:
            self._fetcher.shutdown(wait=True, cancel_futures=True)
        self._hasher.shutdown(wait=True, cancel_futures=True)
        self._blocks.clear()
        self.source.close()
        super().close()

    # blocks ----------------------------------------------------------------------------------
    def _fetch(self, index: int) -> bytes:
        start = index * self.block_size
        return self.source.read_range(start, min(self.block_size, self.size - start))

    def _block(self, index: int) -> bytes:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        ahead = self._ahead
        data = ahead[1].result() if ahead is not None and ahead[0] == index else self._fetch(index)
        self._ahead = None
        self._blocks[index] = data
        while len(self._blocks) > _CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        self._queue_hash(index * self.block_size, data)
        if self._fetcher is not None and index == self._last_block + 1 and (index + 1) * self.block_size < self.size:
            self._ahead = (index + 1, self._fetcher.submit(self._fetch, index + 1))
        self._last_block = index
        return data

    def _queue_hash(self, start: int, data: bytes) -> None:
        self._hash_slots.acquire()
        future = self._hasher.submit(self._hash.feed, start, data)
        future.add_done_callback(lambda _: self._hash_slots.release())

    def digests(self) -> Digests:
        """SHA-256 (and MD5 if asked for) of the whole file, reading only what was never read."""
        self._hasher.submit(lambda: None).result()  # every queued block is hashed
        while self._hash.offset < self.size:
            index = self._hash.offset // self.block_size
            data = self._hash.parked.pop(index * self.block_size, None) or self._fetch(index)
            self._hash.feed(index * self.block_size, data)
        md5 = self._hash.md5.hexdigest() if self._hash.md5 is not None else None
        return Digests(self.size, self._hash.sha256.hexdigest(), md5)
