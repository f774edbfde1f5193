"""Hostile and broken archives never escape, never exhaust memory, and say what is wrong."""

from __future__ import annotations

import gzip
import io
import random
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
    (member,) = archives.iter_zip(bomb, "images_001.zip", archives.Limits(member_bytes=1 << 20))
    assert member.data is None
    assert "larger than" in (member.problem or "")


def test_archive_total_over_the_limit_stops_the_archive() -> None:
    many = _zip({f"images/0000000{i}_000.png": b"\0" * 4096 for i in range(1, 6)})
    with pytest.raises(BadDataError, match=r"images_001\.zip: uncompressed content exceeds"):
        list(archives.iter_zip(many, "images_001.zip", archives.Limits(archive_bytes=10_000)))


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


def test_zip_member_that_lies_about_its_size_stops_at_the_limit() -> None:
    buf = _zip({"images/00000001_000.png": b"\0" * (3 << 20)})
    raw = bytearray(buf.getvalue())
    # Rewrite the declared uncompressed size (local header and central directory) to 100 bytes.
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = raw.find(sig)
        raw[pos + at : pos + at + 4] = (100).to_bytes(4, "little")
    (member,) = archives.iter_zip(io.BytesIO(bytes(raw)), "images_001.zip", archives.Limits(member_bytes=1 << 20))
    assert member.data is None
    assert member.problem is not None


def test_too_many_members_stop_the_archive() -> None:
    many = _zip({f"images/0000000{i}_000.png": PNG for i in range(1, 6)})
    with pytest.raises(BadDataError, match=r"images_001\.zip: more than 3 members"):
        list(archives.iter_zip(many, "images_001.zip", archives.Limits(members=3)))


def test_tar_device_and_fifo_members_are_reported() -> None:
    fifo = tarfile.TarInfo("images/00000001_000.png")
    fifo.type = tarfile.FIFOTYPE
    dev = tarfile.TarInfo("images/00000001_001.png")
    dev.type = tarfile.CHRTYPE
    got = list(archives.iter_tar(_tar([fifo, dev], {}), "images_01.tar.gz"))
    assert {m.problem for m in got} == {"not a regular file (device, fifo or other special member)"}


def test_tar_oversized_member_counts_against_the_archive_budget() -> None:
    big = tarfile.TarInfo("images/00000001_000.png")
    big.size = 4096
    limits = archives.Limits(member_bytes=1024, archive_bytes=2048)
    with pytest.raises(BadDataError, match="uncompressed content exceeds 2048 bytes"):
        list(archives.iter_tar(_tar([big], {big.name: b"\0" * 4096}), "images_01.tar.gz", limits))


def _tar_bytes(names: list[str], size: int) -> bytes:
    infos = []
    for name in names:
        info = tarfile.TarInfo(name)
        info.size = size
        infos.append(info)
    rng = random.Random(7)  # incompressible, like PNG data
    return _tar(infos, {n: rng.randbytes(size) for n in names}).getvalue()


def test_truncated_tar_keeps_the_members_before_the_break() -> None:
    names = [f"images/0000000{i}_000.png" for i in range(1, 5)]
    whole = _tar_bytes(names, 20_000)
    got = list(archives.iter_tar(io.BytesIO(whole[: len(whole) // 2]), "images_01.tar.gz"))
    good = [m for m in got if m.data is not None]
    assert good
    assert [m.path for m in good] == names[: len(good)]
    assert got[-1].data is None
    assert "truncated" in (got[-1].problem or "")


def test_empty_archives_yield_nothing() -> None:
    assert list(archives.iter_zip(_zip({}), "images_001.zip")) == []
    assert list(archives.iter_tar(_tar([], {}), "images_01.tar.gz")) == []


def test_zero_byte_file_is_not_an_archive() -> None:
    for name in ("images_001.zip", "images_01.tar.gz"):
        with pytest.raises(BadDataError, match=name.replace(".", r"\.") + " is not a readable"):
            list(archives.iter_members(io.BytesIO(b""), name))


def test_backslash_and_nul_paths_are_unsafe() -> None:
    assert archives.unsafe_path("..\\..\\00000001_000.png") == "member path escapes the archive root ('..')"
    assert archives.unsafe_path("C:/x/00000001_000.png") == "absolute member path"
    assert archives.unsafe_path("a/b/c/00000001_000.png") is None


def test_corrupt_gzip_trailer_is_reported_after_the_members() -> None:
    names = [f"images/0000000{i}_000.png" for i in range(1, 3)]
    raw = bytearray(_tar_bytes(names, 5_000))
    raw[-8] ^= 0xFF  # the gzip CRC-32 of the uncompressed data
    got = list(archives.iter_tar(io.BytesIO(bytes(raw)), "images_01.tar.gz"))
    assert [m.path for m in got if m.data is not None] == names
    assert got[-1].path == names[-1] + "#after"
    assert "CRC" in (got[-1].problem or "")


def test_damaged_header_mid_archive_is_not_taken_for_the_end() -> None:
    names = [f"images/0000000{i}_000.png" for i in range(1, 4)]
    buf = io.BytesIO()
    rng = random.Random(3)
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1024
            tf.addfile(info, io.BytesIO(rng.randbytes(1024)))
    plain = bytearray(buf.getvalue())
    second_header = 512 + 1024
    plain[second_header + 148 : second_header + 156] = b"garbage!"  # header checksum field
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb") as gz:
        gz.write(bytes(plain))
    got = list(archives.iter_tar(io.BytesIO(packed.getvalue()), "images_01.tar.gz"))
    assert [m.path for m in got if m.data is not None] == names[:1]
    assert "damaged member header" in (got[-1].problem or "")


def test_tar_gz_name_holding_a_plain_or_bzip2_tar_is_still_read() -> None:
    import bz2

    names = [f"images/0000000{i}_000.png" for i in range(1, 3)]
    plain = gzip.decompress(_tar_bytes(names, 3000))
    for data in (plain, bz2.compress(plain)):
        got = list(archives.iter_tar(io.BytesIO(data), "images_01.tar.gz"))
        assert [m.path for m in got if m.data is not None] == names
