"""What every archive reader shares: unsafe paths, the budget that stops hostile archives, unpacked folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import BadDataError
from pipeline.ingest import archives

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


def test_backslash_and_nul_paths_are_unsafe() -> None:
    assert archives.unsafe_path("..\\..\\00000001_000.png") == "member path escapes the archive root ('..')"
    assert archives.unsafe_path("C:/x/00000001_000.png") == "absolute member path"
    assert archives.unsafe_path("a/b/c/00000001_000.png") is None
    assert archives.unsafe_path("images/0000\0001_000.png") == "member path holds a NUL byte"


def test_the_budget_stops_an_archive_with_too_many_members_or_bytes() -> None:
    budget = archives.Budget("images_001.zip", archives.Limits(members=2, archive_bytes=100))
    budget.count()
    budget.count()
    with pytest.raises(BadDataError, match=r"images_001\.zip: more than 2 members; refusing to go on"):
        budget.count()
    budget.spend(100)
    with pytest.raises(BadDataError, match=r"images_001\.zip: uncompressed content exceeds 100 bytes"):
        budget.spend(1)


def test_the_ratio_applies_only_past_its_free_allowance() -> None:
    limits = archives.Limits(ratio=2, ratio_free=1000)
    budget = archives.Budget("images_01.tar.gz", limits, packed=lambda: 10)
    budget.spend(1000)  # 100 times the packed bytes, but within the free allowance
    with pytest.raises(BadDataError, match=r"images_01\.tar\.gz: 1001 bytes inflated from 10 compressed bytes"):
        budget.spend(1)
    unpacked = archives.Budget("images_001", limits)  # a folder: nothing compressed, no ratio
    unpacked.spend(5000)
    assert unpacked.used == 5000


def _folder(root: Path) -> Path:
    shard = root / "images_001"
    (shard / "images" / "b").mkdir(parents=True)
    (shard / "images" / "00000002_000.png").write_bytes(PNG)
    (shard / "images" / "00000001_000.png").write_bytes(PNG + b"1")
    (shard / "images" / "b" / "00000003_000.png").write_bytes(PNG + b"3")
    return shard


def test_a_folder_shard_yields_its_files_in_sorted_order_at_any_depth(tmp_path: Path) -> None:
    shard = _folder(tmp_path)
    got = [(m.path, m.data) for m in archives.FolderShard(str(shard), "images_001").members()]
    assert got == [
        ("images/00000001_000.png", PNG + b"1"),
        ("images/00000002_000.png", PNG),
        ("images/b/00000003_000.png", PNG + b"3"),
    ]


def test_a_folder_shard_reports_links_and_oversized_files_without_reading_them(tmp_path: Path) -> None:
    shard = _folder(tmp_path)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "00000009_000.png").write_bytes(PNG)
    os.symlink(outside / "00000009_000.png", shard / "images" / "00000004_000.png")
    os.symlink(outside, shard / "images" / "linked")
    (shard / "images" / "00000005_000.png").write_bytes(b"\0" * 2048)
    folder = archives.FolderShard(str(shard), "images_001", archives.Limits(member_bytes=1024))
    problems = {m.path: m.problem for m in folder.members() if m.data is None}
    assert problems == {
        "images/linked": "symbolic link member",
        "images/00000004_000.png": "symbolic link member",
        "images/00000005_000.png": "member larger than 1024 bytes",
    }


def test_a_folder_shards_digest_follows_its_content_and_names(tmp_path: Path) -> None:
    shard = _folder(tmp_path)

    def digest() -> str:
        folder = archives.FolderShard(str(shard), "images_001")
        for _ in folder.members():
            pass
        return folder.sha256

    before = digest()
    assert digest() == before
    (shard / "images" / "00000002_000.png").write_bytes(PNG[:-1] + b"y")  # same size, other bytes
    changed = digest()
    assert changed != before
    (shard / "images" / "00000002_000.png").rename(shard / "images" / "00000006_000.png")
    assert digest() not in {before, changed}
