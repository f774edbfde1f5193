"""Hostile and broken tars never escape, never exhaust memory, and say what is wrong; a break keeps what came before."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pipeline.errors import BadDataError
from pipeline.ingest import archives, tars

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100
MiB = 1 << 20


def _tar(add: list[tarfile.TarInfo], data: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info in add:
            tf.addfile(info, io.BytesIO(data.get(info.name, b"")) if info.isfile() else None)
    buf.seek(0)
    return buf


def test_tar_links_are_reported_and_regular_members_stream() -> None:
    link = tarfile.TarInfo("images/00000001_000.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("images/00000001_001.png")
    hard.type, hard.linkname = tarfile.LNKTYPE, "images/00000001_002.png"
    regular = tarfile.TarInfo("images/00000001_002.png")
    regular.size = len(PNG)
    got = list(tars.iter_tar(_tar([regular, link, hard], {regular.name: PNG}), "images_01.tar.gz"))
    assert [m.problem for m in got] == [
        None,
        "link member (symbolic or hard link)",
        "link member (symbolic or hard link)",
    ]
    assert got[0].data == PNG


def test_tar_device_and_fifo_members_are_reported() -> None:
    fifo = tarfile.TarInfo("images/00000001_000.png")
    fifo.type = tarfile.FIFOTYPE
    dev = tarfile.TarInfo("images/00000001_001.png")
    dev.type = tarfile.CHRTYPE
    got = list(tars.iter_tar(_tar([fifo, dev], {}), "images_01.tar.gz"))
    assert {m.problem for m in got} == {"not a regular file (device, fifo or other special member)"}


def test_tar_oversized_member_counts_against_the_archive_budget() -> None:
    big = tarfile.TarInfo("images/00000001_000.png")
    big.size = 4096
    limits = archives.Limits(member_bytes=1024, archive_bytes=2048)
    with pytest.raises(BadDataError, match="uncompressed content exceeds 2048 bytes"):
        list(tars.iter_tar(_tar([big], {big.name: b"\0" * 4096}), "images_01.tar.gz", limits))


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
    got = list(tars.iter_tar(io.BytesIO(whole[: len(whole) // 2]), "images_01.tar.gz"))
    good = [m for m in got if m.data is not None]
    assert good
    assert [m.path for m in good] == names[: len(good)]
    assert got[-1].data is None
    assert "truncated" in (got[-1].problem or "")


def test_empty_tar_yields_nothing() -> None:
    assert list(tars.iter_tar(_tar([], {}), "images_01.tar.gz")) == []


def test_corrupt_gzip_trailer_is_reported_after_the_members() -> None:
    names = [f"images/0000000{i}_000.png" for i in range(1, 3)]
    raw = bytearray(_tar_bytes(names, 5_000))
    raw[-8] ^= 0xFF  # the gzip CRC-32 of the uncompressed data
    got = list(tars.iter_tar(io.BytesIO(bytes(raw)), "images_01.tar.gz"))
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
    got = list(tars.iter_tar(io.BytesIO(packed.getvalue()), "images_01.tar.gz"))
    assert [m.path for m in got if m.data is not None] == names[:1]
    assert "damaged member header" in (got[-1].problem or "")


def test_tar_gz_name_holding_a_plain_or_bzip2_tar_is_still_read() -> None:
    import bz2

    names = [f"images/0000000{i}_000.png" for i in range(1, 3)]
    plain = gzip.decompress(_tar_bytes(names, 3000))
    for data in (plain, bz2.compress(plain)):
        got = list(tars.iter_tar(io.BytesIO(data), "images_01.tar.gz"))
        assert [m.path for m in got if m.data is not None] == names


# --- budgets that hold: every inflated byte counted, ratio, headers ---------------------------------------------


def test_tar_inflation_is_bounded_by_a_ratio_to_the_compressed_bytes_read() -> None:
    limits = archives.Limits(ratio=20, ratio_free=MiB)
    big = tarfile.TarInfo("images/00000001_000.png")
    big.size = 4 * MiB
    with pytest.raises(BadDataError, match=r"images_01\.tar\.gz: \d+ bytes inflated .* more than 20 times"):
        list(tars.iter_tar(_tar([big], {big.name: b"\0" * big.size}), "images_01.tar.gz", limits))


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
    got = list(tars.iter_tar(io.BytesIO(gzip.compress(plain)), "images_01.tar.gz"))
    assert [(m.path, m.problem) for m in got] == [
        ("images/00000001_000.png", "tar member of unknown type b'Z'"),
        ("images/00000001_001.png", None),
    ]
    with pytest.raises(BadDataError, match="uncompressed content exceeds 32768 bytes"):
        list(tars.iter_tar(io.BytesIO(gzip.compress(plain)), "images_01.tar.gz", archives.Limits(archive_bytes=32768)))


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
    got = list(tars.iter_tar(io.BytesIO(gzip.compress(_sparse_members()[kind])), "images_01.tar.gz"))
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
    got = list(tars.iter_tar(io.BytesIO(gzip.compress(plain)), "images_01.tar.gz"))
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
    got = list(tars.iter_tar(io.BytesIO(gzip.compress(plain)), "images_01.tar.gz"))
    assert [m.problem for m in got] == [
        "pax header holds a run of more than 256 digits: not read (a hostile or damaged archive)",
        "pax header holds a malformed record at byte 0: not read (a hostile or damaged archive)",
    ]
    glob = _info("././@PaxHeader", 2 * MiB, tarfile.XGLTYPE)
    broken = list(tars.iter_tar(io.BytesIO(_raw_tar([(first, PNG), (glob, bytes(glob.size))])), "images_01.tar"))
    assert broken[0].data == PNG
    assert "global pax header of 2097152 bytes" in (broken[-1].problem or "")


_PAX_BOMB_SCRIPT = """
import json, re, sys
from pathlib import Path
from pipeline.ingest import tars
with open(sys.argv[1], "rb") as fh:
    got = [(m.path, m.problem, len(m.data or b"")) for m in tars.iter_tar(fh, "images_01.tar")]
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
