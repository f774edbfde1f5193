"""Streaming multipart uploads: the object equals what was written, small ones are one PUT, failures leave nothing."""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import tarfile
from typing import Any

import pytest

from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.store.multipart import MultipartWriter, PartBuffers
from pipeline.store.storage import Store

pytestmark = pytest.mark.integration
MIB = 1 << 20


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    return Store(
        StoreConfig(f"s3://{s3_bucket}/p", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    )


@pytest.mark.parametrize("size", [0, 3 * MIB, 17 * MIB + 123])
def test_written_bytes_arrive_whole_with_their_digests(store: Store, size: int) -> None:
    data = os.urandom(size)
    with MultipartWriter(store, "obj.bin", part_size=5 * MIB) as out:
        for start in range(0, size, 1_000_003):
            out.write(data[start : start + 1_000_003])
    assert out.result is not None
    assert store.get_bytes("obj.bin") == data
    assert out.result.sha256 == hashlib.sha256(data).hexdigest()
    assert out.result.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert out.result.size == size
    held = store.head("obj.bin", checksums=True)
    assert held is not None
    if size > 5 * MIB:  # multipart: the store holds the composite CRC32 the writer recorded (what publishing checks)
        assert out.result.crc32 is not None
        assert out.result.crc32.endswith(f"-{-(-size // (5 * MIB))}")
        assert held.checksums == {"ChecksumCRC32": out.result.crc32}
    else:  # one PUT: the store holds its SHA-256
        assert out.result.crc32 is None
        assert base64.b64decode(held.checksums["ChecksumSHA256"]).hex() == out.result.sha256


def test_a_failing_writer_leaves_no_object_and_no_pending_upload(store: Store, s3_client: Any) -> None:
    def broken_writer() -> None:
        with MultipartWriter(store, "half.bin", part_size=5 * MIB) as out:
            out.write(os.urandom(11 * MIB))
            raise RuntimeError("writer broke")

    with pytest.raises(RuntimeError, match="writer broke"):
        broken_writer()
    assert not store.exists("half.bin")
    pending = s3_client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    assert [u for u in pending if u["Key"] == store.key("half.bin")] == []


def test_tarfile_streams_into_it(store: Store, tmp_path: Any) -> None:
    with MultipartWriter(store, "a.tar", part_size=5 * MIB) as out, tarfile.open(fileobj=out, mode="w") as tar:
        member = tmp_path / "x.bin"
        member.write_bytes(os.urandom(6 * MIB))
        tar.add(member, arcname="x.bin")
    local = tmp_path / "a.tar"
    local.write_bytes(store.get_bytes("a.tar"))
    with tarfile.open(local) as tar:
        assert tar.extractfile("x.bin").read() == member.read_bytes()  # type: ignore[union-attr]


def test_each_part_carries_a_crc32_the_store_keeps(store: Store, s3_client: Any) -> None:
    data = os.urandom(11 * MIB)
    with MultipartWriter(store, "crc.bin", part_size=5 * MIB, md5=False) as out:
        out.write(data)
    assert out.result is not None
    assert out.result.md5 is None  # asked not to: only WebDataset shards need an MD5
    head = s3_client.head_object(Bucket=store.bucket, Key=store.key("crc.bin"), ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"].endswith("-3")  # composite over three parts, each checked on arrival
    assert store.get_bytes("crc.bin") == data


def test_a_writer_finished_inside_its_block_is_completed_once(store: Store, s3_client: Any) -> None:
    data = os.urandom(11 * MIB)
    with MultipartWriter(store, "early.bin", part_size=5 * MIB) as out:
        out.write(data)
        done = out.finish()  # what a unit does to overlap its last uploads
    assert out.result is done
    assert store.get_bytes("early.bin") == data

    def fail_after_the_finish() -> None:
        with MultipartWriter(store, "kept.bin", part_size=5 * MIB) as late:
            late.write(data)
            late.finish()
            raise RuntimeError("failed after the finish")

    with pytest.raises(RuntimeError, match="after the finish"):
        fail_after_the_finish()
    assert store.get_bytes("kept.bin") == data  # a complete object is not aborted afterwards
    assert s3_client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_writers_one_after_another_reuse_the_part_buffers(store: Store) -> None:
    """Writing a part copies into memory already mapped: the second object's parts fault in (almost) no page,
    where a fresh buffer per part (and a copy of it for the upload) faulted in two pages per 4 KiB written."""
    pieces = [os.urandom(MIB) for _ in range(24)]  # 24 MiB: 4 parts of 5 MiB and a last one of 4
    written = []
    for name in ("first.bin", "second.bin"):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with MultipartWriter(store, name, part_size=5 * MIB) as out:
            for piece in pieces:
                out.write(piece)
        written.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert store.get_bytes("second.bin") == b"".join(pieces)
    pages = 24 * MIB // 4096
    assert written[1] < pages // 4, f"page faults per object: {written}, of {pages} pages written"


def test_a_part_buffer_is_handed_to_one_writer_at_a_time() -> None:
    """Given back twice (two threads finishing its upload and its hashing at once), a buffer is still kept once:
    two writers filling the same buffer would mix their bytes."""
    parts = PartBuffers(keep=3)
    one, two = parts.take(16), parts.take(16)
    assert one is not two
    parts.give(one)
    parts.give(one)
    taken = [parts.take(16), parts.take(16)]
    assert taken[0] is one
    assert taken[1] is not one, "the second take is a new buffer, not the same one again"
    for buffer in (*taken, two, bytearray(16)):
        parts.give(buffer)
    assert len({id(parts.take(16)) for _ in range(4)}) == 4, "at most `keep` kept, each once"
