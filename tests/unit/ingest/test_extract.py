"""Landing archives in the raw zone: the reader chosen by name, members screened, images landed once, reruns skipped."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import BadDataError
from pipeline.ingest import extract, files, rawzone
from pipeline.ingest.archives import Member
from pipeline.store.storage import Store


def _png(width: int = 2, height: int = 2, value: int = 0) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + bytes([value]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_not_an_archive_fails_naming_the_file() -> None:
    with pytest.raises(BadDataError, match=r"images_003\.zip is not a readable zip"):
        list(extract.iter_members(io.BytesIO(b"this is not a zip"), "images_003.zip"))
    with pytest.raises(BadDataError, match=r"images_03\.tar\.gz is not a readable tar"):
        list(extract.iter_members(io.BytesIO(b"this is not a tar"), "images_03.tar.gz"))


def test_zero_byte_file_is_not_an_archive() -> None:
    for name in ("images_001.zip", "images_01.tar.gz"):
        with pytest.raises(BadDataError, match=name.replace(".", r"\.") + " is not a readable"):
            list(extract.iter_members(io.BytesIO(b""), name))


def test_an_unknown_archive_type_is_refused_by_name() -> None:
    with pytest.raises(BadDataError, match=r"images_001\.rar: unknown archive type \(expected \.zip or \.tar\.gz\)"):
        extract.iter_members(io.BytesIO(b"Rar!"), "images_001.rar")


def test_members_that_cannot_land_are_screened_with_their_reason() -> None:
    seen: set[str] = set()
    unsafe = extract.screen(
        Member("../00000001_000.png", None, "member path escapes the archive root ('..')"), "s", seen
    )
    assert unsafe is not None
    assert (unsafe["status"], unsafe["reason"]) == ("quarantined", "member path escapes the archive root ('..')")
    readme = extract.screen(Member("images/README.txt", b"hello"), "s", seen)
    assert readme is not None
    assert (readme["status"], readme["reason"]) == ("skipped", "name is not NNNNNNNN_NNN.png")
    assert extract.screen(Member("images/00000001_000.png", b"png"), "s", seen) is None
    again = extract.screen(Member("other/00000001_000.png", b"png"), "s", seen)
    assert again is not None
    assert (again["status"], again["reason"]) == ("quarantined", "same image name twice in this archive")


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    return Store(s3_stack.store_config(f"s3://{s3_bucket}/cxr"))


def _zip(path: Path, members: dict[str, bytes]) -> files.FileRef:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return files.local_ref(path)


def test_an_archive_lands_its_sound_images_and_accounts_for_every_member(store: Store, tmp_path: Path) -> None:
    good, other = _png(value=1), _png(value=2)
    members = {
        "images/00000001_000.png": good,
        "images/00000002_000.png": other + b"trailing junk",
        "images/00000003_000.png": b"not a png",
        "images/notes.txt": b"hello",
    }
    ref = _zip(tmp_path / "images_001.zip", members)
    result = extract.extract_shard(store, ref, upload_workers=2)
    assert (result.images, result.quarantined, result.uploaded, result.skipped) == (2, 2, 2, False)
    manifest = pq.read_table(io.BytesIO(store.get_bytes(f"{result.prefix}/manifest.parquet"))).to_pylist()
    rows = {row["member"]: row for row in manifest}
    assert set(rows) == set(members)  # every member has its row
    assert rows["images/00000003_000.png"]["status"] == "quarantined"
    assert rows["images/notes.txt"]["status"] == "skipped"
    assert store.get_bytes(rows["images/00000001_000.png"]["key"]) == good
    assert store.get_bytes(rows["images/00000002_000.png"]["key"]) == other  # cut after IEND, and said so
    assert rows["images/00000002_000.png"]["repaired"]
    again = extract.extract_shard(store, ref, upload_workers=2)
    assert (again.skipped, again.uploaded, again.images, again.archive_sha256) == (True, 0, 2, result.archive_sha256)


def test_a_copied_archive_is_hashed_and_skipped_and_the_same_images_are_not_uploaded_twice(
    store: Store, tmp_path: Path
) -> None:
    members = {f"images/0000000{i}_000.png": _png(value=i) for i in range(1, 4)}
    first = extract.extract_shard(store, _zip(tmp_path / "images_001.zip", members))
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "images_001.zip").write_bytes((tmp_path / "images_001.zip").read_bytes())
    moved = extract.extract_shard(store, files.local_ref(tmp_path / "copy" / "images_001.zip"))
    assert (moved.skipped, moved.archive_sha256) == (True, first.archive_sha256)  # same bytes, new location
    members["images/00000004_000.png"] = _png(value=4)
    grown = extract.extract_shard(store, _zip(tmp_path / "images_001.zip", members))
    assert (grown.skipped, grown.images, grown.uploaded) == (False, 4, 1)  # three were in the store already
    assert rawzone.extracted_versions(store, "images_001.zip") == {first.archive_sha256, grown.archive_sha256}
