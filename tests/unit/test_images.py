"""PNG integrity checks and grayscale conversion, on the real NIH images and on broken copies."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from pipeline import images
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
