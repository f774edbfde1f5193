"""Hostile and broken archives never escape, never exhaust memory, and say what is wrong."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from pipeline import archives
from pipeline.errors import BadDataError

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def _tar(add: list[tarfile.TarInfo], data: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info in add:
            tf.addfile(info, io.BytesIO(data.get(info.name, b"")) if info.isfile() else None)
    buf.seek(0)
    return buf


def test_zip_slip_and_absolute_paths_are_reported_not_read() -> None:
    members = {"../../etc/00000001_000.png": PNG, "/abs/00000001_001.png": PNG, "images/00000001_002.png": PNG}
    got = {m.path: m for m in archives.iter_zip(_zip(members), "images_001.zip")}
    assert got["../../etc/00000001_000.png"].problem == "member path escapes the archive root ('..')"
    assert got["/abs/00000001_001.png"].problem == "absolute member path"
    assert got["images/00000001_002.png"].data == PNG


def test_tar_links_are_reported_and_regular_members_stream() -> None:
    link = tarfile.TarInfo("images/00000001_000.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("images/00000001_001.png")
    hard.type, hard.linkname = tarfile.LNKTYPE, "images/00000001_002.png"
    regular = tarfile.TarInfo("images/00000001_002.png")
    regular.size = len(PNG)
    got = list(archives.iter_tar(_tar([regular, link, hard], {regular.name: PNG}), "images_01.tar.gz"))
    assert [m.problem for m in got] == [
        None,
        "link member (symbolic or hard link)",
        "link member (symbolic or hard link)",
    ]
    assert got[0].data == PNG


def test_member_over_the_limit_is_refused_without_reading_it_whole() -> None:
    bomb = _zip({"images/00000001_000.png": b"\0" * (2 << 20)})
    (member,) = archives.iter_zip(bomb, "images_001.zip", max_member=1 << 20)
    assert member.data is None
    assert "larger than" in (member.problem or "")


def test_archive_total_over_the_limit_stops_the_archive() -> None:
    many = _zip({f"images/0000000{i}_000.png": b"\0" * 4096 for i in range(1, 6)})
    with pytest.raises(BadDataError, match=r"images_001\.zip: uncompressed content exceeds"):
        list(archives.iter_zip(many, "images_001.zip", max_total=10_000))


def test_not_an_archive_fails_naming_the_file() -> None:
    with pytest.raises(BadDataError, match=r"images_003\.zip is not a readable zip"):
        list(archives.iter_members(io.BytesIO(b"this is not a zip"), "images_003.zip"))
    with pytest.raises(BadDataError, match=r"images_03\.tar\.gz is not a readable tar"):
        list(archives.iter_members(io.BytesIO(b"this is not a tar"), "images_03.tar.gz"))


def test_zip_crc_error_is_a_member_problem() -> None:
    buf = _zip({"images/00000001_000.png": PNG * 50})
    raw = bytearray(buf.getvalue())
    at = raw.find(PNG) + 60
    raw[at] ^= 0xFF
    (member,) = archives.iter_zip(io.BytesIO(bytes(raw)), "images_001.zip")
    assert member.data is None
    assert "Bad CRC-32" in (member.problem or "")
