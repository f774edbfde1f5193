"""Hostile inputs through a whole `cxr run`: every bad archive member and CSV ends in its documented outcome
(docs/bad-input.md): quarantined with its reason, or a clear `error:` (exit 1), never a
traceback, never an object outside the store prefix, never a silent drop (the run's accounting adds up).

The archive builders are those of ``test_ingest.py`` (which checks the same members at the extract stage).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import png as images
from pipeline.dev.stack import StackInfo
from pipeline.publish.latest import read_latest
from pipeline.publish.listing import list_versions
from pipeline.publish.manifest import read_manifest
from pipeline.publish.verify import verify_release
from pipeline.store.storage import Store
from tests.integration.ingest.test_ingest import _synth_images, png_bomb_header, write_archive, zip_with_crc_error
from tests.integration.releases import cxr, make_source, store_config
from tests.reliability.figures import record

pytestmark = pytest.mark.integration
ENTRY = "Data_Entry_2017.csv"


def _png16() -> bytes:
    buf = io.BytesIO()
    Image.new("I;16", (64, 64), 40000).save(buf, format="PNG")
    return buf.getvalue()


def _tar_member(tf: tarfile.TarFile, name: str, data: bytes | None = None, link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = (tarfile.SYMTYPE if link.startswith("/") else tarfile.LNKTYPE), link
        tf.addfile(info)
        return
    info.size = len(data or b"")
    tf.addfile(info, io.BytesIO(data or b""))


def hostile_archives(src: Path) -> dict[str, str]:
    """Write bad archives (and the CSVs listing their images) into ``src``; return member -> expected reason."""
    good = iter(sorted(_synth_images(src, 20, seed=13).items()))
    n = {key: next(good) for key in ("slip", "abs", "ok", "trunc", "gif", "dup", "pngcrc", "bit16", "crc", "x")}
    n |= {key: next(good) for key in ("tsym", "thard", "tabs", "tok", "tcut")}
    pngcrc = bytearray(n["pngcrc"][1])
    pngcrc[40] ^= 0xFF
    members = {
        f"../../evil/{n['slip'][0]}": n["slip"][1],
        f"/abs/{n['abs'][0]}": n["abs"][1],
        f"images/{n['ok'][0]}": n["ok"][1],
        "images/readme.txt": b"not an image",
        f"images/{n['trunc'][0]}": n["trunc"][1][:-300],
        f"images/{n['gif'][0]}": b"GIF89a" + b"\0" * 100,
        f"images/{n['dup'][0]}": n["dup"][1],
        f"other/{n['dup'][0]}": n["dup"][1],
        f"images/{n['pngcrc'][0]}": bytes(pngcrc),
        f"images/{n['bit16'][0]}": _png16(),
        "images/00099999_000.png": png_bomb_header(),
    }
    with zipfile.ZipFile(src / "images_001.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("images/00099999_001.png", b"\0" * (65 << 20))  # a zip bomb member: inflates past 64 MB
        link = zipfile.ZipInfo("images/00099999_002.png")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    crc = {f"images/{n['crc'][0]}": n["crc"][1], f"images/{n['x'][0]}": n["x"][1]}
    (src / "images_002.zip").write_bytes(zip_with_crc_error(crc, f"images/{n['crc'][0]}"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        _tar_member(tf, f"images/{n['tok'][0]}", n["tok"][1])
        _tar_member(tf, f"images/{n['tsym'][0]}", link="/etc/passwd")
        _tar_member(tf, f"images/{n['thard'][0]}", link=f"images/{n['tok'][0]}")
        _tar_member(tf, f"/etc/{n['tabs'][0]}", n["tabs"][1])
        _tar_member(tf, f"images/{n['tcut'][0]}", n["tcut"][1])
    packed = gzip.compress(buf.getvalue())
    (src / "images_03.tar.gz").write_bytes(packed[: len(packed) - len(n["tcut"][1]) // 2])
    write_archive(src / "images_004.zip", {})
    return {
        f"../../evil/{n['slip'][0]}": "member path escapes the archive root ('..')",
        f"/abs/{n['abs'][0]}": "absolute member path",
        "images/readme.txt": "name is not NNNNNNNN_NNN.png",
        f"images/{n['trunc'][0]}": "truncated",
        f"images/{n['gif'][0]}": "not a PNG (bad signature)",
        f"other/{n['dup'][0]}": "same image name twice in this archive",
        f"images/{n['pngcrc'][0]}": "CRC mismatch",
        "images/00099999_000.png": "decompression-bomb limit",
        "images/00099999_001.png": "member larger than 67108864 bytes",
        "images/00099999_002.png": "symbolic link member",
        f"images/{n['crc'][0]}": "Bad CRC-32",
        f"images/{n['tsym'][0]}": "link member (symbolic or hard link)",
        f"images/{n['thard'][0]}": "link member (symbolic or hard link)",
        f"/etc/{n['tabs'][0]}": "absolute member path",
        f"images/{n['tcut'][0]}": "truncated",
    }


def _objects_outside(stack: StackInfo, s3_bucket: str, prefix: str) -> list[str]:
    """Every object of the (test's own) bucket that is not under the run's store prefix."""
    whole = Store(store_config(stack, f"s3://{s3_bucket}"))
    return [info.key for info in whole.list("") if not info.key.startswith(prefix + "/")]


def test_hostile_archives_quarantine_every_bad_member_with_its_reason(
    tmp_path: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src = tmp_path / "hostile"
    src.mkdir()
    expected = hostile_archives(src)
    (src / "BBox_List_2017.csv").unlink()  # optional; the 20 synthetic images happen to have no boxes
    run = cxr(["run", "--source", str(src), "--store", f"s3://{s3_bucket}/archives", "--release", "v1"], s3_stack.env())
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    store = Store(store_config(s3_stack, f"s3://{s3_bucket}/archives"))
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    quarantine = pq.read_table(io.BytesIO(store.get_bytes("releases/v1/quarantine.parquet"))).to_pandas()
    by_member = {row.member: row.reason for row in quarantine.itertuples() if row.member}
    for member, reason in expected.items():
        assert reason in by_member.get(member, "<not quarantined>"), member
    accounting = manifest["accounting"]
    assert accounting["input_images"] == accounting["published_images"] + accounting["quarantined_images"]
    assert accounting["input_images"] == 13 + 2 + 5  # every member of the four archives, good or bad, counted
    meta = pq.read_table(io.BytesIO(store.get_bytes("releases/v1/metadata.parquet"))).to_pandas()
    assert meta["converted"].sum() == 1  # the 16-bit PNG, converted once to 8-bit grayscale
    assert verify_release(store, "v1").ok
    assert _objects_outside(s3_stack, s3_bucket, "archives") == []
    record("hostile", "archive_members_quarantined", len(expected))
    record("hostile", "archive_run_accounting", accounting)


def _edit(lines: list[bytes], at: int, old: bytes, new: bytes) -> bytes:
    return b"\n".join([*lines[:at], lines[at].replace(old, new, 1), *lines[at + 1 :]])


def _cases(entry: bytes) -> dict[str, tuple[bytes | None, int, str]]:
    """Case -> (new Data_Entry bytes, or None for a broken archive; exit code; what stderr or stdout says)."""
    lines = entry.split(b"\n")
    label = lines[3].split(b",")[1]
    return {
        "csv with BOM": (b"\xef\xbb\xbf" + entry, 0, "release v1: published"),
        "csv with CRLF": (entry.replace(b"\n", b"\r\n"), 0, "release v1: published"),
        "csv with NUL bytes": (_edit(lines, 3, b",", b",\x00"), 1, "binary data (NUL bytes)"),
        "csv formula injection": (_edit(lines, 3, label, b'=HYPERLINK("http://x")'), 1, "labels_in_vocabulary"),
        "csv huge field": (_edit(lines, 3, label, b"A" * (3 << 20)), 1, "field larger than field limit"),
        "csv unknown header": (_edit(lines, 0, b"Patient Age", b"Shoe Size"), 1, "unknown header"),
        "csv duplicate rows": (b"\n".join([*lines[:4], lines[3], *lines[4:]]), 1, "image_index_unique"),
        "csv non-UTF-8 bytes": (_edit(lines, 3, b",", b",\xe9"), 1, "not UTF-8 text (byte 0xe9"),
        "archive that is an HTML page": (None, 1, "is not a readable zip archive"),
    }


@pytest.fixture(scope="module")
def base_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("csv") / "mirror", images=24, seed=3)


@pytest.mark.parametrize("case", list(_cases(b"a,b\n" * 5)))
def test_hostile_metadata_ends_in_its_documented_outcome(
    case: str, base_source: Path, tmp_path: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(base_source, src)
    data, code, says = _cases((base_source / ENTRY).read_bytes())[case]
    if data is None:
        (src / "images_005.zip").write_text("<html>404 Not Found</html>")
    else:
        (src / ENTRY).write_bytes(data)
    prefix = "csv-" + case.replace(" ", "-")
    run = cxr(["run", "--source", str(src), "--store", f"s3://{s3_bucket}/{prefix}", "--release", "v1"], s3_stack.env())
    assert run.returncode == code, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    store = Store(store_config(s3_stack, f"s3://{s3_bucket}/{prefix}"))
    if code == 0:
        assert says in run.stdout
        manifest = read_manifest(store, "v1")
        assert manifest is not None
        assert manifest["accounting"]["published_images"] == manifest["accounting"]["data_entry_rows"] == 24
    else:
        assert run.stderr.strip().splitlines()[-1].startswith("error: ") or "error: " in run.stderr
        assert says in run.stderr
        assert list_versions(store).published == []
        assert read_latest(store) is None
    assert _objects_outside(s3_stack, s3_bucket, prefix) == []
    record("hostile", case, {"exit": run.returncode, "says": says})


def _gray8(png: bytes) -> bool:
    return images.read_header(png).is_gray8


def _with_private_chunks(png: bytes, count: int) -> bytes:
    """``png`` with ``count`` empty private chunks after IHDR (valid CRCs: only their number is wrong)."""
    empty = struct.pack(">I", 0) + b"prVt" + struct.pack(">I", zlib.crc32(b"prVt"))
    ihdr_end = 8 + 12 + 13
    return png[:ihdr_end] + empty * count + png[ihdr_end:]


def test_only_png_is_published_from_a_png(tmp_path: Path, s3_stack: StackInfo, s3_bucket: str) -> None:
    """A file riding after IEND is cut off (the row says so, the sha256 is of what is published); a chunk flood
    is quarantined with its reason; the rest of the source publishes."""
    src = make_source(tmp_path / "mirror", images=24, seed=21)
    shards: dict[Path, dict[str, bytes]] = {}
    for archive in sorted(src.glob("images_*.zip")):
        with zipfile.ZipFile(archive) as zf:
            shards[archive] = {name: zf.read(name) for name in zf.namelist()}
    gray = [(a, name) for a, members in shards.items() for name, data in members.items() if _gray8(data)]
    (rider_zip, rider), (flood_zip, flood) = gray[0], gray[-1]
    payload = b"PK\x03\x04" + b"a zip hidden behind IEND " * 200
    png = shards[rider_zip][rider]
    shards[rider_zip][rider] = png + payload
    shards[flood_zip][flood] = _with_private_chunks(shards[flood_zip][flood], images.MAX_ANCILLARY_CHUNKS + 1)
    for archive in {rider_zip, flood_zip}:
        write_archive(archive, shards[archive])

    prefix = "only-png"
    run = cxr(["run", "--source", str(src), "--store", f"s3://{s3_bucket}/{prefix}", "--release", "v1"], s3_stack.env())
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    store = Store(store_config(s3_stack, f"s3://{s3_bucket}/{prefix}"))
    assert verify_release(store, "v1").ok
    meta = pq.read_table(io.BytesIO(store.get_bytes("releases/v1/metadata.parquet"))).to_pandas()
    row = meta.set_index("image_index").loc[PurePosixPath(rider).name]
    assert row["repaired"] == f"stripped {len(payload)} bytes after IEND"
    assert row["sha256"] == hashlib.sha256(png).hexdigest()
    assert meta["repaired"].notna().sum() == 1  # every other row says nothing was repaired
    published = _published_png(store, row["split"], PurePosixPath(rider).name)
    assert published == png  # the PNG through IEND, and not one byte of what rode behind it

    quarantine = pq.read_table(io.BytesIO(store.get_bytes("releases/v1/quarantine.parquet"))).to_pandas()
    reasons = {r.member: r.reason for r in quarantine.itertuples()}
    assert "chunk flood" in reasons[flood]
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    accounting = manifest["accounting"]
    assert accounting["published_images"] == 23
    assert accounting["input_images"] == accounting["published_images"] + accounting["quarantined_images"]
    assert _objects_outside(s3_stack, s3_bucket, prefix) == []
    record("hostile", "bytes after IEND", {"published": "stripped", "repaired": row["repaired"]})
    record("hostile", "chunk flood", {"quarantined": reasons[flood]})


def _published_png(store: Store, split: str, image_index: str) -> bytes:
    """The ``image`` bytes of one row of the release's Parquet files (and the same bytes in its WebDataset tar)."""
    found: list[bytes] = []
    for info in store.list(f"releases/v1/parquet/split={split}/"):
        table = pq.read_table(io.BytesIO(store.get_bytes(info.key)), columns=["image_index", "image"])
        found += [r["image"] for r in table.to_pylist() if r["image_index"] == image_index]
    for info in store.list(f"releases/v1/webdataset/{split}/"):
        if info.key.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(store.get_bytes(info.key))) as tf:
                if image_index in tf.getnames():  # <image_id>.png
                    member = tf.extractfile(image_index)
                    assert member is not None
                    found.append(member.read())
    assert len(found) == 2, found
    assert found[0] == found[1]
    return found[0]
