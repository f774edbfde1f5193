"""Images whose every chunk CRC is right (so they land in the raw zone) but whose pixels cannot be decoded, in a
whole `cxr run`, with the 256 px variant and without it (`--variant-size 0`, where an 8-bit gray image is
published byte for byte): each is quarantined with its reason, archive and member; every other image is
published; the run exits 0, `cxr verify` passes, the accounting adds up and a rerun is not stuck."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import png as images
from pipeline.dev.stack import StackInfo
from pipeline.publish.manifest import read_manifest
from pipeline.store.storage import Store
from tests.integration.releases import cxr, make_source, store_config
from tests.reliability.figures import record

pytestmark = pytest.mark.integration


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_pixel_data(png: bytes, height: int | None, idat: bytes) -> bytes:
    """``png`` with its IDAT payload replaced (and its IHDR height, when given), every CRC recomputed."""
    ihdr = bytearray(png[16:29])
    if height is not None:
        ihdr[4:8] = struct.pack(">I", height)
    return images.PNG_SIGNATURE + _chunk(b"IHDR", bytes(ihdr)) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _scanlines(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as img:
        gray = img.convert("L")
    return b"".join(b"\0" + gray.tobytes()[y * gray.width : (y + 1) * gray.width] for y in range(gray.height))


def broken_variants(png: bytes) -> dict[str, tuple[bytes, str]]:
    """Two undecodable copies of a gray8 ``png`` -> (bytes, what the quarantine reason says)."""
    rows = _scanlines(png)
    height = struct.unpack(">I", png[20:24])[0]
    packed = bytearray(zlib.compress(rows))
    packed[len(packed) // 2 : len(packed) // 2 + 8] = b"\xff" * 8  # a broken deflate stream: Pillow's own failure
    return {
        "broken data stream": (_with_pixel_data(png, None, bytes(packed)), "image cannot be decoded: "),
        # complete data for half the rows, IHDR claims all: Pillow decodes it without error, filling zeros
        "IHDR larger than the data": (
            _with_pixel_data(png, height, zlib.compress(rows[: len(rows) // 2])),
            "IHDR claims a larger image",
        ),
    }


def _gray8_members(src: Path) -> dict[str, tuple[Path, str, bytes]]:
    """Image name -> (archive, member name, bytes) of every 8-bit gray image of the source."""
    found: dict[str, tuple[Path, str, bytes]] = {}
    for archive in sorted(src.glob("images_*.zip")):
        with zipfile.ZipFile(archive) as zf:
            for name in sorted(n for n in zf.namelist() if n.endswith(".png")):
                if images.read_header(data := zf.read(name)).is_gray8:
                    found[Path(name).name] = (archive, name, data)
    return found


def _replace_members(archive: Path, replaced: dict[str, bytes]) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, replaced.get(name, data))


@pytest.fixture(scope="module")
def clean_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("undecodable") / "mirror", images=40, seed=11)


def _table(store: Store, rel: str) -> dict[str, list[object]]:
    table: dict[str, list[object]] = pq.read_table(io.BytesIO(store.get_bytes(rel))).to_pydict()
    return table


@pytest.mark.parametrize("variant", ["256", "0"], ids=["variant on", "variant off"])
def test_undecodable_images_are_quarantined_and_the_rest_is_published(
    variant: str, clean_source: Path, tmp_path: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(clean_source, src)
    gray8 = _gray8_members(src)
    boxed = next(name for name in gray8 if name in (src / "BBox_List_2017.csv").read_text())
    plain = next(name for name in gray8 if name != boxed)
    targets = {plain: "broken data stream", boxed: "IHDR larger than the data"}  # the second one's box goes too
    bad: dict[str, tuple[Path, str, bytes, str]] = {}
    for image, case in targets.items():
        archive, member, data = gray8[image]
        broken, says = broken_variants(data)[case]
        images.check_png(broken)  # sound chunks: extract lets it land
        _replace_members(archive, {member: broken})
        bad[member] = (archive, image, broken, says)

    uri = f"s3://{s3_bucket}/undecodable"
    run = cxr(
        ["run", "--source", str(src), "--store", uri, "--release", "v1", "--variant-size", variant], s3_stack.env()
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "release v1: published" in run.stdout
    store = Store(store_config(s3_stack, uri))
    manifest = read_manifest(store, "v1")
    assert manifest is not None

    quarantine = _table(store, "releases/v1/quarantine.parquet")
    rows = [dict(zip(quarantine, values, strict=True)) for values in zip(*quarantine.values(), strict=True)]
    undecodable = {row["member"]: row for row in rows if row["reason_code"] == "undecodable_image"}
    assert set(undecodable) == set(bad)
    for member, (archive, image, _, says) in bad.items():
        row = undecodable[member]
        assert (row["source"], row["image_index"]) == (archive.name, image)
        assert says in str(row["reason"]), row["reason"]
    box = [row for row in rows if row["reason_code"] == "bbox_image_quarantined" and row["image_index"] == boxed]
    assert len(box) == 1
    assert box[0]["source"] == "BBox_List_2017.csv"

    meta = _table(store, "releases/v1/metadata.parquet")
    published = set(map(str, meta["image_index"]))
    assert not published & set(targets)
    image_codes = {"rejected_at_extraction", "not_an_image_name", "duplicate_image", "image_without_row",
                   "image_in_no_split_list", "undecodable_image"}  # fmt: skip
    held = {str(row["image_index"]) for row in rows if row["reason_code"] in image_codes}
    landed = set()
    for path in src.glob("images_*.zip"):
        with zipfile.ZipFile(path) as zf:
            landed |= {Path(n).name for n in zf.namelist() if n.endswith(".png")}
    assert published == landed - held  # every good image published
    parquet = _table(store, "releases/v1/parquet/split=train/train-000000-00.parquet")
    assert (parquet["image_small"][0] is None) == (variant == "0")

    assert manifest["quarantine_reasons"]["undecodable_image"] == 2
    assert manifest["quarantined"] == len(rows)
    assert sum(manifest["counts"].values()) == manifest["images"] == len(published)
    figures = manifest["accounting"]
    assert figures["input_images"] == figures["published_images"] + figures["quarantined_images"]
    assert figures["published_images"] == len(published)
    card = store.get_bytes("releases/v1/README.md").decode()
    assert "image cannot be decoded (found at conversion)" in card

    verify = cxr(["verify", "--store", uri, "--release", "v1"], s3_stack.env())
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = cxr(
        ["run", "--source", str(src), "--store", uri, "--release", "v1", "--variant-size", variant, "--json"],
        s3_stack.env(),
    )
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert not summary["published"]  # unchanged: the release already holds these inputs
    assert (summary["counts"], summary["quarantined"]) == (manifest["counts"], manifest["quarantined"])
    record("hostile", f"undecodable_images_variant_{variant}", {m: str(undecodable[m]["reason"]) for m in bad})
