"""A seekable file over ranged reads: reads like a file, hashes in one pass, fetches each block once."""

from __future__ import annotations

import hashlib
import io
import os
import random
import zipfile

import pytest

from pipeline.ingest import rangefile


class MemoryRanges:
    """An in-memory RangeSource that counts requests."""

    def __init__(self, data: bytes) -> None:
        self.data, self.location, self.size, self.requests = data, "mem://x", len(data), 0

    def read_range(self, start: int, length: int) -> bytes:
        self.requests += 1
        return self.data[start : start + length]

    def close(self) -> None:
        pass


def test_rangefile_reads_and_seeks_like_a_file() -> None:
    data = random.Random(1).randbytes(10_000)
    fh = rangefile.RangeFile(MemoryRanges(data), block_size=1024)
    ref = io.BytesIO(data)
    rng = random.Random(2)
    for _ in range(300):
        where, n = rng.randrange(0, 10_500), rng.randrange(0, 3000)
        fh.seek(where)
        ref.seek(where)
        assert fh.read(n) == ref.read(n)
        assert fh.tell() == ref.tell()
    fh.seek(-10, io.SEEK_END)
    assert fh.read() == data[-10:]
    fh.close()


def test_rangefile_digests_need_no_second_pass_for_a_zip() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(40):
            zf.writestr(f"images/{i:08d}_000.png", random.Random(i).randbytes(5000))
    data = buf.getvalue()
    source = MemoryRanges(data)
    with rangefile.RangeFile(source, block_size=8192, md5=True) as fh:
        with zipfile.ZipFile(fh) as zf:
            for info in zf.infolist():
                zf.read(info)
        digests = fh.digests()
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.md5 == hashlib.md5(data).hexdigest()
    blocks = -(-len(data) // 8192)
    assert source.requests <= blocks + 2  # every block once, the central directory perhaps twice


def test_rangefile_digests_fill_what_was_never_read() -> None:
    data = os.urandom(50_000)
    with rangefile.RangeFile(MemoryRanges(data), block_size=4096) as fh:
        fh.seek(30_000)
        fh.read(100)
        assert fh.digests().sha256 == hashlib.sha256(data).hexdigest()


def test_a_negative_seek_is_an_error_naming_the_file() -> None:
    with rangefile.RangeFile(MemoryRanges(b"0123456789"), block_size=4) as fh:
        with pytest.raises(OSError, match=r"mem://x: negative seek position -1"):
            fh.seek(-1)
        fh.seek(-4, io.SEEK_END)
        buf = bytearray(8)
        assert fh.readinto(buf) == 4
        assert bytes(buf[:4]) == b"6789"


def test_reading_front_to_back_fetches_each_block_once() -> None:
    data = os.urandom(64 * 1024)
    source = MemoryRanges(data)
    with rangefile.RangeFile(source, block_size=4096) as fh:
        got = b"".join(iter(lambda: fh.read(1000), b""))
        assert got == data
        assert fh.digests().sha256 == hashlib.sha256(data).hexdigest()
    assert source.requests == len(data) // 4096  # read ahead in the background, never twice
