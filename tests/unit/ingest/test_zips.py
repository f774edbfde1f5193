"""Hostile and broken zips never escape, never exhaust memory, and say what is wrong."""

from __future__ import annotations

import io
import random
import struct
import zipfile

import pytest

from pipeline.errors import BadDataError
from pipeline.ingest import archives, zips

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100
MiB = 1 << 20


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def test_zip_slip_and_absolute_paths_are_reported_not_read() -> None:
    members = {"../../etc/00000001_000.png": PNG, "/abs/00000001_001.png": PNG, "images/00000001_002.png": PNG}
    got = {m.path: m for m in zips.iter_zip(_zip(members), "images_001.zip")}
    assert got["../../etc/00000001_000.png"].problem == "member path escapes the archive root ('..')"
    assert got["/abs/00000001_001.png"].problem == "absolute member path"
    assert got["images/00000001_002.png"].data == PNG


def test_member_over_the_limit_is_refused_without_reading_it_whole() -> None:
    bomb = _zip({"images/00000001_000.png": b"\0" * (2 << 20)})
    (member,) = zips.iter_zip(bomb, "images_001.zip", archives.Limits(member_bytes=1 << 20))
    assert member.data is None
    assert "larger than" in (member.problem or "")


def test_archive_total_over_the_limit_stops_the_archive() -> None:
    many = _zip({f"images/0000000{i}_000.png": b"\0" * 4096 for i in range(1, 6)})
    with pytest.raises(BadDataError, match=r"images_001\.zip: uncompressed content exceeds"):
        list(zips.iter_zip(many, "images_001.zip", archives.Limits(archive_bytes=10_000)))


def test_zip_crc_error_is_a_member_problem() -> None:
    buf = _zip({"images/00000001_000.png": PNG * 50})
    raw = bytearray(buf.getvalue())
    at = raw.find(PNG) + 60
    raw[at] ^= 0xFF
    (member,) = zips.iter_zip(io.BytesIO(bytes(raw)), "images_001.zip")
    assert member.data is None
    assert "Bad CRC-32" in (member.problem or "")


def test_zip_member_that_lies_about_its_size_stops_at_the_limit() -> None:
    buf = _zip({"images/00000001_000.png": b"\0" * (3 << 20)})
    raw = bytearray(buf.getvalue())
    # Rewrite the declared uncompressed size (local header and central directory) to 100 bytes.
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = raw.find(sig)
        raw[pos + at : pos + at + 4] = (100).to_bytes(4, "little")
    (member,) = zips.iter_zip(io.BytesIO(bytes(raw)), "images_001.zip", archives.Limits(member_bytes=1 << 20))
    assert member.data is None
    assert member.problem is not None


def test_too_many_members_stop_the_archive() -> None:
    many = _zip({f"images/0000000{i}_000.png": PNG for i in range(1, 6)})
    with pytest.raises(BadDataError, match=r"images_001\.zip: more than 3 members"):
        list(zips.iter_zip(many, "images_001.zip", archives.Limits(members=3)))


def test_empty_zip_yields_nothing() -> None:
    assert list(zips.iter_zip(_zip({}), "images_001.zip")) == []


# --- budgets that hold: every inflated byte counted, ratio, overlapping entries ---------------------------------


def _zip_deflated(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _central_directory(raw: bytes) -> tuple[int, int]:
    """(offset, size) of a small zip's central directory, from its end record (the last 22 bytes)."""
    size, offset = struct.unpack("<II", raw[-10:-2])
    return offset, size


def _bad_crcs(raw: bytes) -> bytes:
    """Every central-directory entry's CRC-32 flipped: each member inflates whole, then fails its check."""
    out = bytearray(raw)
    at, size = _central_directory(raw)
    while (pos := out.find(b"PK\x01\x02", at, at + size)) >= 0:
        out[pos + 16] ^= 0xFF
        at = pos + 46
    return bytes(out)


def _repeated_entries(raw: bytes, copies: int) -> bytes:
    """One member's central-directory entry listed ``copies`` times (other names, same local header and data)."""
    start, size = _central_directory(raw)
    entry = raw[start : start + size]
    name_length = struct.unpack("<H", entry[28:30])[0]
    entries = b""
    for i in range(copies):
        name = f"images/{i + 1:08d}_000.png".encode()
        assert len(name) == name_length
        entries += entry[:46] + name + entry[46 + name_length :]
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, copies, copies, len(entries), start, 0)
    return raw[:start] + entries + end


def test_entries_sharing_one_compressed_member_fail_the_zip_before_anything_inflates() -> None:
    one = _bad_crcs(_zip_deflated({"images/00000001_000.png": b"\0" * (4 * MiB)}))
    bomb = _repeated_entries(one, 300)  # 300 x 4 MiB of zeros from one 4 KB member, each failing its CRC
    members = zips.iter_zip(io.BytesIO(bomb), "images_001.zip")
    with pytest.raises(BadDataError, match=r"images_001\.zip: zip entry .* overlaps entry .*re-download it"):
        next(members)  # refused before the first member is yielded: nothing was inflated


def test_an_entry_pointing_into_another_members_data_fails_the_zip() -> None:
    rng = random.Random(5)
    raw = bytearray(_zip_deflated({f"images/0000000{i}_000.png": rng.randbytes(50_000) for i in (1, 2)}))
    start, size = _central_directory(bytes(raw))
    second = raw.find(b"PK\x01\x02", start + 46, start + size)
    raw[second + 42 : second + 46] = struct.pack("<I", 1000)  # its local header "inside" the first member's data
    with pytest.raises(BadDataError, match="overlaps"):
        list(zips.iter_zip(io.BytesIO(bytes(raw)), "images_001.zip"))


def test_members_that_fail_their_crc_still_count_every_inflated_byte() -> None:
    members = {f"images/{i:08d}_000.png": b"\0" * MiB for i in range(1, 9)}
    bad = _bad_crcs(_zip_deflated(members))
    limits = archives.Limits(archive_bytes=5 * MiB, ratio=10_000)
    seen: list[archives.Member] = []
    with pytest.raises(BadDataError, match=r"images_001\.zip: uncompressed content exceeds 5242880 bytes"):
        seen.extend(zips.iter_zip(io.BytesIO(bad), "images_001.zip", limits))
    # five members of 1 MiB each spent the budget although none of them read back; the sixth passes it
    assert len(seen) == 5
    assert all("Bad CRC-32" in (m.problem or "") for m in seen)


def test_zip_inflation_is_bounded_by_a_ratio_to_the_compressed_size() -> None:
    limits = archives.Limits(ratio=20, ratio_free=MiB)
    zeros = _zip_deflated({f"images/0000000{i}_000.png": b"\0" * (2 * MiB) for i in range(1, 4)})
    with pytest.raises(
        BadDataError, match=r"images_001\.zip: \d+ bytes inflated from \d+ compressed bytes, more than 20"
    ):
        list(zips.iter_zip(io.BytesIO(zeros), "images_001.zip", limits))
    # real images hardly compress: incompressible members of the same size pass under the same limits
    rng = random.Random(1)
    noise = {f"images/0000000{i}_000.png": rng.randbytes(2 * MiB) for i in range(1, 4)}
    assert [m.data for m in zips.iter_zip(io.BytesIO(_zip_deflated(noise)), "x.zip", limits)] == list(noise.values())
