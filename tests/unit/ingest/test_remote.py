"""Ranged reads of local files and S3 objects (a real SeaweedFS endpoint) that resume and never mix versions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import BadDataError, SourceNotFoundError, SourceUnavailableError
from pipeline.ingest import remote

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def test_local_ranges_read_files(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    src = remote.LocalRanges(path)
    assert (src.size, src.read_range(3, 4), src.read_range(8, 10)) == (10, b"3456", b"89")
    src.close()


def test_resume_retries_from_where_a_response_broke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BACKOFF_FIRST_S", 0.0)
    data = bytes(range(256)) * 40
    asked: list[tuple[int, int]] = []

    def flaky(buf: bytearray, offset: int, end: int) -> None:
        asked.append((offset, end))
        buf += data[offset : min(end, offset + 3000)]
        if len(asked) < 4:
            raise ConnectionResetError("connection reset by peer")

    assert remote.fill("test", 0, len(data), flaky) == data
    assert [a[0] for a in asked[:4]] == [0, 3000, 6000, 9000]


def test_resume_gives_up_after_attempts_without_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BACKOFF_FIRST_S", 0.0)

    def dead(buf: bytearray, offset: int, end: int) -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(SourceUnavailableError, match=r"test: 8 attempts in a row failed at byte 0") as info:
        remote.fill("test", 0, 10, dead)
    assert info.value.retryable


# --- S3 sources on the local endpoint ------------------------------------------------------------------


@pytest.fixture
def s3_source(s3_stack: StackInfo, s3_client: S3Client, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<bucket>/nih``: a source prefix on the local endpoint, reached with the store's AWS_* settings."""
    for key, value in s3_stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CXR_SOURCE_ENDPOINT_URL", raising=False)
    return f"s3://{s3_bucket}/nih"


def test_an_s3_listing_names_the_files_directly_under_the_prefix(s3_source: str, s3_client: S3Client) -> None:
    bucket = s3_source.split("/")[2]
    s3_client.put_object(Bucket=bucket, Key="nih/images_001.zip", Body=b"zip bytes")
    s3_client.put_object(Bucket=bucket, Key="nih/Data_Entry_2017.csv", Body=b"csv")
    s3_client.put_object(Bucket=bucket, Key="nih/deeper/images_002.zip", Body=b"not at the top")
    found = {info.name: info for info in remote.s3_list(s3_source)}
    assert sorted(found) == ["Data_Entry_2017.csv", "images_001.zip"]
    assert (found["images_001.zip"].location, found["images_001.zip"].size) == (f"{s3_source}/images_001.zip", 9)
    assert found["images_001.zip"].validator  # the ETag pins later reads to this version
    head = remote.s3_head(f"{s3_source}/images_001.zip")
    assert head is not None
    assert (head.size, head.validator) == (9, found["images_001.zip"].validator)
    assert remote.s3_head(f"{s3_source}/missing.zip") is None


def test_s3_ranges_read_exact_bytes_and_refuse_a_replaced_object(s3_source: str, s3_client: S3Client) -> None:
    bucket, data = s3_source.split("/")[2], os.urandom(300_000)
    s3_client.put_object(Bucket=bucket, Key="nih/images_001.zip", Body=data)
    info = remote.s3_head(f"{s3_source}/images_001.zip")
    assert info is not None
    ranges = remote.S3Ranges(info.location, info.size, info.validator)
    assert ranges.read_range(1000, 5000) == data[1000:6000]
    assert ranges.read_range(299_990, 100) == data[299_990:]  # clipped at the end
    s3_client.put_object(Bucket=bucket, Key="nih/images_001.zip", Body=os.urandom(300_000))
    with pytest.raises(BadDataError, match=r"images_001\.zip: the file changed while it was being read; rerun"):
        ranges.read_range(0, 10)
    with pytest.raises(SourceNotFoundError, match=r"missing\.zip: not found"):
        remote.S3Ranges(f"{s3_source}/missing.zip", 10, "").read_range(0, 10)
