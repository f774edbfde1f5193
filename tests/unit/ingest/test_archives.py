"""Hostile and broken archives never escape, never exhaust memory, and say what is wrong."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.errors import BadDataError
from pipeline.ingest import archives

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


# --- budgets that hold: every inflated byte counted, ratio, overlapping entries, headers -------------------------

MiB = 1 << 20


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
    members = archives.iter_zip(io.BytesIO(bomb), "images_001.zip")
    with pytest.raises(BadDataError, match=r"images_001\.zip: zip entry .* overlaps entry .*re-download it"):
        next(members)  # refused before the first member is yielded: nothing was inflated


def test_an_entry_pointing_into_another_members_data_fails_the_zip() -> None:
    rng = random.Random(5)
    raw = bytearray(_zip_deflated({f"images/0000000{i}_000.png": rng.randbytes(50_000) for i in (1, 2)}))
    start, size = _central_directory(bytes(raw))
    second = raw.find(b"PK\x01\x02", start + 46, start + size)
    raw[second + 42 : second + 46] = struct.pack("<I", 1000)  # its local header "inside" the first member's data
    with pytest.raises(BadDataError, match="overlaps"):
        list(archives.iter_zip(io.BytesIO(bytes(raw)), "images_001.zip"))


def test_members_that_fail_their_crc_still_count_every_inflated_byte() -> None:
    members = {f"images/{i:08d}_000.png": b"\0" * MiB for i in range(1, 9)}
    bad = _bad_crcs(_zip_deflated(members))
    limits = archives.Limits(archive_bytes=5 * MiB, ratio=10_000)
    seen: list[archives.Member] = []
    with pytest.raises(BadDataError, match=r"images_001\.zip: uncompressed content exceeds 5242880 bytes"):
        seen.extend(archives.iter_zip(io.BytesIO(bad), "images_001.zip", limits))
    # five members of 1 MiB each spent the budget although none of them read back; the sixth passes it
    assert len(seen) == 5
    assert all("Bad CRC-32" in (m.problem or "") for m in seen)


def test_inflation_is_bounded_by_a_ratio_to_the_compressed_size() -> None:
    limits = archives.Limits(ratio=20, ratio_free=MiB)
    zeros = _zip_deflated({f"images/0000000{i}_000.png": b"\0" * (2 * MiB) for i in range(1, 4)})
    with pytest.raises(
        BadDataError, match=r"images_001\.zip: \d+ bytes inflated from \d+ compressed bytes, more than 20"
    ):
        list(archives.iter_zip(io.BytesIO(zeros), "images_001.zip", limits))
    big = tarfile.TarInfo("images/00000001_000.png")
    big.size = 4 * MiB
    with pytest.raises(BadDataError, match=r"images_01\.tar\.gz: \d+ bytes inflated .* more than 20 times"):
        list(archives.iter_tar(_tar([big], {big.name: b"\0" * big.size}), "images_01.tar.gz", limits))
    # real images hardly compress: incompressible members of the same size pass under the same limits
    rng = random.Random(1)
    noise = {f"images/0000000{i}_000.png": rng.randbytes(2 * MiB) for i in range(1, 4)}
    assert [m.data for m in archives.iter_zip(io.BytesIO(_zip_deflated(noise)), "x.zip", limits)] == list(
        noise.values()
    )


def _raw_tar(blocks: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """A tar of headers and data written as given (any member type, any data: tarfile checks neither)."""
    out = b""
    for info, data in blocks:
        out += info.tobuf(fmt) + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    return out + b"\0" * (2 * tarfile.BLOCKSIZE)


def _info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info


def test_tar_members_of_unknown_type_are_reported_and_counted() -> None:
    odd = _info("images/00000001_000.png", 64 * 1024, b"Z")
    plain = _raw_tar([(odd, bytes(odd.size)), (_info("images/00000001_001.png", len(PNG)), PNG)])
    got = list(archives.iter_tar(io.BytesIO(gzip.compress(plain)), "images_01.tar.gz"))
    assert [(m.path, m.problem) for m in got] == [
        ("images/00000001_000.png", "tar member of unknown type b'Z'"),
        ("images/00000001_001.png", None),
    ]
    with pytest.raises(BadDataError, match="uncompressed content exceeds 32768 bytes"):
        list(
            archives.iter_tar(
                io.BytesIO(gzip.compress(plain)), "images_01.tar.gz", archives.Limits(archive_bytes=32768)
            )
        )


def _sparse_members() -> dict[str, bytes]:
    """The three ways a tar marks a sparse member, each followed by a regular member."""
    after = ("images/00000009_000.png", PNG)
    old_gnu = _info("images/00000001_000.png", 10, tarfile.GNUTYPE_SPARSE)
    pax01 = _info("images/00000002_000.png", 10)
    pax01.pax_headers = {"GNU.sparse.map": "0,10", "GNU.sparse.realsize": "1000000"}
    pax10 = _info("images/00000003_000.png", 512 + 10)
    pax10.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "1000000"}
    map10 = b"1\n0\n10\n".ljust(512, b"\0") + b"x" * 10
    regular = _info(*after[:1], len(after[1]))
    return {
        "GNU type S": _raw_tar([(old_gnu, b"x" * 10), (regular, after[1])]),
        "pax GNU.sparse 0.1": _raw_tar([(pax01, b"x" * 10), (regular, after[1])], tarfile.PAX_FORMAT),
        "pax GNU.sparse 1.0": _raw_tar([(pax10, map10), (regular, after[1])], tarfile.PAX_FORMAT),
    }


@pytest.mark.parametrize("kind", list(_sparse_members()))
def test_sparse_tar_members_are_reported_not_read(kind: str) -> None:
    got = list(archives.iter_tar(io.BytesIO(gzip.compress(_sparse_members()[kind])), "images_01.tar.gz"))
    assert len(got) == 2
    assert got[0].data is None
    assert "sparse tar member" in (got[0].problem or "")
    assert (got[1].path, got[1].data) == ("images/00000009_000.png", PNG)  # the stream went on at the right place


def test_oversized_pax_and_long_name_headers_report_their_member_and_the_archive_goes_on() -> None:
    pax = _info("././@PaxHeader", 2 * MiB, tarfile.XHDTYPE)
    longname = _info("././@LongLink", 2 * MiB, tarfile.GNUTYPE_LONGNAME)
    first, second, last = (_info(f"images/0000000{i}_000.png", len(PNG)) for i in (1, 2, 3))
    plain = _raw_tar(
        [(pax, b"9" * pax.size), (first, PNG), (longname, b"a" * longname.size), (second, PNG), (last, PNG)]
    )
    got = list(archives.iter_tar(io.BytesIO(gzip.compress(plain)), "images_01.tar.gz"))
    assert [m.path for m in got] == [first.name, second.name, last.name]
    assert (
        got[0].problem
        == "pax header of 2097152 bytes, over the 1048576-byte limit: not read (a hostile or damaged archive)"
    )
    assert (got[1].problem or "").startswith("GNU long-name header of 2097152 bytes")
    assert got[2].data == PNG
    # within the size limit but not pax records: refused in linear time (tarfile's parser is quadratic in them)
    digits, junk = _info("././@PaxHeader", 256 * 1024, tarfile.XHDTYPE), _info("././@PaxHeader", 9, tarfile.XHDTYPE)
    plain = _raw_tar([(digits, b"9" * digits.size), (first, PNG), (junk, b"12 path=x\n"[:9]), (second, PNG)])
    got = list(archives.iter_tar(io.BytesIO(gzip.compress(plain)), "images_01.tar.gz"))
    assert [m.problem for m in got] == [
        "pax header holds a run of more than 256 digits: not read (a hostile or damaged archive)",
        "pax header holds a malformed record at byte 0: not read (a hostile or damaged archive)",
    ]
    glob = _info("././@PaxHeader", 2 * MiB, tarfile.XGLTYPE)
    broken = list(archives.iter_tar(io.BytesIO(_raw_tar([(first, PNG), (glob, bytes(glob.size))])), "images_01.tar"))
    assert broken[0].data == PNG
    assert "global pax header of 2097152 bytes" in (broken[-1].problem or "")


_PAX_BOMB_SCRIPT = """
import json, re, sys
from pathlib import Path
from pipeline.ingest import archives
with open(sys.argv[1], "rb") as fh:
    got = [(m.path, m.problem, len(m.data or b"")) for m in archives.iter_tar(fh, "images_01.tar")]
# VmHWM: this process's peak RSS (ru_maxrss would keep the forking parent's peak across exec)
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"members": got, "peak_rss_kb": peak}))
"""


def test_a_huge_pax_header_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    declared = 400 * MiB  # read whole, as tarfile does, it would take this much memory two or three times over
    pax = _info("././@PaxHeader", declared, tarfile.XHDTYPE)
    first, second = (_info(f"images/0000000{i}_000.png", len(PNG)) for i in (1, 2))
    path = tmp_path / "images_01.tar"
    with path.open("wb") as fh:  # a sparse file: the header's 400 MB of zeros take no disk
        fh.write(pax.tobuf(tarfile.GNU_FORMAT))
        fh.seek(declared, os.SEEK_CUR)
        fh.write(_raw_tar([(first, PNG), (second, PNG)]))
    run = subprocess.run(
        [sys.executable, "-c", _PAX_BOMB_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    result = json.loads(run.stdout)
    assert result["members"] == [
        [
            first.name,
            f"pax header of {declared} bytes, over the 1048576-byte limit: not read (a hostile or damaged archive)",
            0,
        ],
        [second.name, None, len(PNG)],
    ]
    assert result["peak_rss_kb"] < 150 * 1024, result["peak_rss_kb"]  # about 30 MB: the interpreter and imports
