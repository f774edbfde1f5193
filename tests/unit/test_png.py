"""PNG integrity checks and grayscale conversion, on the real NIH images and on broken copies."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline import png as images
from pipeline.ingest import extract
from pipeline.ingest.archives import Member
from tests.reference import IMAGES as REAL


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format="PNG")
    return out.getvalue()


def test_real_images_pass_and_are_gray8() -> None:
    assert len(REAL) == 8
    for path in REAL:
        info = images.check_png(path.read_bytes())
        assert (info.width, info.height, info.mode, info.is_gray8) == (1024, 1024, "L", True)


def test_flipped_byte_is_a_crc_error_naming_the_chunk() -> None:
    data = bytearray(REAL[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(images.ImageError, match="CRC mismatch in a IDAT chunk"):
        images.check_png(bytes(data))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[: len(d) // 3], "truncated"),
        (lambda d: b"GIF89a" + d[6:], "not a PNG"),
        (lambda d: d[:-12], "no IEND"),
        (lambda d: d[:20], "truncated before its IHDR"),
    ],
)
def test_broken_pngs_are_refused_with_a_reason(mutate: object, message: str) -> None:
    with pytest.raises(images.ImageError, match=message):
        images.check_png(mutate(REAL[1].read_bytes()))  # type: ignore[operator]


def test_rgba_converts_to_its_luminance_and_keeps_size() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((32, 48), 255, np.uint8)])
    out = images.to_gray8_png(_png(rgba, "RGBA"))
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    with Image.open(io.BytesIO(out)) as img:
        assert img.mode == "L"
        assert np.array_equal(np.asarray(img), expected)


def test_two_channel_keeps_the_gray_channel_and_16_bit_keeps_the_top_byte() -> None:
    gray = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 256
    la = np.dstack([gray.astype(np.uint8), np.full((64, 64), 200, np.uint8)])
    with Image.open(io.BytesIO(images.to_gray8_png(_png(la, "LA")))) as img:
        assert np.array_equal(np.asarray(img), gray.astype(np.uint8))
    wide = (gray * 257).astype(np.uint16)
    data = _png(wide)
    assert images.read_header(data).mode == "L;16"
    with Image.open(io.BytesIO(images.to_gray8_png(data))) as img:
        assert np.array_equal(np.asarray(img), gray.astype(np.uint8))


def test_a_gray8_image_is_published_as_its_raw_bytes_and_others_are_converted_once() -> None:
    raw = REAL[0].read_bytes()
    kept = images.process_image(raw, hashlib.sha256(raw).hexdigest(), "raw/a.png", 256)
    assert kept.png is None  # the caller publishes ``raw`` itself; a worker never sends it back
    assert (kept.converted, kept.sha256) == (False, hashlib.sha256(raw).hexdigest())
    with Image.open(io.BytesIO(kept.small or b"")) as small:
        assert (small.mode, max(small.size)) == ("L", 256)
    rgba = _png(np.dstack([np.full((32, 48, 3), 90, np.uint8), np.full((32, 48), 255, np.uint8)]), "RGBA")
    changed = images.process_image(rgba, hashlib.sha256(rgba).hexdigest(), "raw/b.png", None)
    assert changed.png is not None
    assert (changed.converted, changed.small) == (True, None)
    assert changed.sha256 == hashlib.sha256(changed.png).hexdigest()


def test_bytes_that_differ_from_the_manifest_name_the_object_and_the_fix() -> None:
    raw = REAL[0].read_bytes()
    with pytest.raises(images.ImageError, match=r"raw object raw/a\.png does not match .*re-run extract"):
        images.process_image(raw, "0" * 64, "raw/a.png", None)


# --- only PNG in a PNG: bytes after IEND, chunk floods ------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_chunks_after_ihdr(png: bytes, chunks: bytes) -> bytes:
    ihdr_end = len(images.PNG_SIGNATURE) + 12 + 13
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def test_bytes_after_iend_are_stripped_and_the_stored_sha256_is_of_the_png_alone() -> None:
    png = REAL[0].read_bytes()
    rider = b"PK\x03\x04" + b"another file riding inside the PNG" * 40
    info = images.check_png(png + rider)
    assert info.end == len(png)
    assert images.strip_trailing(png + rider, info) == (png, f"stripped {len(rider)} bytes after IEND")
    assert images.strip_trailing(png, images.check_png(png)) == (png, None)
    member = Member("images/00000001_000.png", png + rider)
    row, digest = extract.check(member, "images_001.zip", "raw/shards/images_001")
    assert digest == hashlib.sha256(png).digest()
    assert (row["status"], row["size"], row["sha256"]) == ("ok", len(png), hashlib.sha256(png).hexdigest())
    assert row["repaired"] == f"stripped {len(rider)} bytes after IEND"
    whole, _ = extract.check(Member("images/00000001_000.png", png), "images_001.zip", "raw/shards/images_001")
    assert whole["repaired"] is None
    assert whole["key"] == row["key"]  # the same pixels, stored once under the same key


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        (_chunk(b"prVt", b"") * (images.MAX_ANCILLARY_CHUNKS + 1), "more than 1000 ancillary chunks"),
        (_chunk(b"prVt", b"\0" * (images.MAX_ANCILLARY_BYTES + 1)), "more than 1048576 bytes of ancillary chunks"),
    ],
)
def test_a_flood_of_private_chunks_is_refused_as_a_chunk_flood(chunks: bytes, message: str) -> None:
    flooded = _with_chunks_after_ihdr(REAL[2].read_bytes(), chunks)
    with pytest.raises(images.ImageError, match=f"PNG holds {message} \\(a chunk flood"):
        images.check_png(flooded)
    row, digest = extract.check(Member("images/00000001_002.png", flooded), "images_001.zip", "raw/shards/images_001")
    assert (row["status"], digest) == ("quarantined", None)
    assert "chunk flood" in row["reason"]


def test_too_many_chunks_of_any_kind_is_a_flood_and_real_images_are_far_below_every_limit() -> None:
    empty_idat = _chunk(b"IDAT", b"")
    png = REAL[3].read_bytes()
    at = png.rindex(b"IEND") - 4
    flooded = png[:at] + empty_idat * images.MAX_CHUNKS + png[at:]
    with pytest.raises(images.ImageError, match="more than 100000 chunks"):
        images.check_png(flooded)
    xmp = _chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + b"<x:xmpmeta/>" * 300)  # what the RGBA ones carry
    assert images.check_png(_with_chunks_after_ihdr(png, xmp)).end == len(png) + len(xmp)
