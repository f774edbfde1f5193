"""Pixels: an 8-bit gray image is published as its raw bytes, others are converted once to 8-bit gray, the variant
is downsized; every image is proven decodable before, whatever needs decoding, and bytes unlike the manifest
fail the run instead of being quarantined."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from pipeline.convert import pixels
from pipeline.errors import ImageError, UndecodableImageError
from pipeline.png import read_header
from tests.reference import IMAGES as REAL
from tests.unit.test_png import BROKEN, GOOD, adam7_rows, build_png, pillow_decodes


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format="PNG")
    return out.getvalue()


def test_rgba_converts_to_its_luminance_and_keeps_size() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((32, 48), 255, np.uint8)])
    out = pixels.to_gray8_png(_png(rgba, "RGBA"))
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    with Image.open(io.BytesIO(out)) as img:
        assert img.mode == "L"
        assert np.array_equal(np.asarray(img), expected)


def test_two_channel_keeps_the_gray_channel_and_16_bit_keeps_the_top_byte() -> None:
    gray = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 256
    la = np.dstack([gray.astype(np.uint8), np.full((64, 64), 200, np.uint8)])
    with Image.open(io.BytesIO(pixels.to_gray8_png(_png(la, "LA")))) as img:
        assert np.array_equal(np.asarray(img), gray.astype(np.uint8))
    wide = (gray * 257).astype(np.uint16)
    data = _png(wide)
    assert read_header(data).mode == "L;16"
    with Image.open(io.BytesIO(pixels.to_gray8_png(data))) as img:
        assert np.array_equal(np.asarray(img), gray.astype(np.uint8))


def test_a_gray8_image_is_published_as_its_raw_bytes_and_others_are_converted_once() -> None:
    raw = REAL[0].read_bytes()
    kept = pixels.process_image(raw, hashlib.sha256(raw).hexdigest(), "raw/a.png", 256)
    assert kept.png is None  # the caller publishes ``raw`` itself; a worker never sends it back
    assert (kept.converted, kept.sha256) == (False, hashlib.sha256(raw).hexdigest())
    with Image.open(io.BytesIO(kept.small or b"")) as small:
        assert (small.mode, max(small.size)) == ("L", 256)
    rgba = _png(np.dstack([np.full((32, 48, 3), 90, np.uint8), np.full((32, 48), 255, np.uint8)]), "RGBA")
    changed = pixels.process_image(rgba, hashlib.sha256(rgba).hexdigest(), "raw/b.png", None)
    assert changed.png is not None
    assert (changed.converted, changed.small) == (True, None)
    assert changed.sha256 == hashlib.sha256(changed.png).hexdigest()


def test_bytes_that_differ_from_the_manifest_name_the_object_and_the_fix() -> None:
    raw = REAL[0].read_bytes()
    with pytest.raises(ImageError, match=r"raw object raw/a\.png does not match .*re-run extract"):
        pixels.process_image(raw, "0" * 64, "raw/a.png", None)


def test_the_variant_keeps_the_aspect_ratio_and_averages_whole_blocks() -> None:
    gray = np.repeat(np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16, 8, axis=0), 8, axis=1)
    with Image.open(io.BytesIO(pixels.downsize_png(_png(gray), 4))) as img:
        assert (img.mode, img.size) == ("L", (4, 4))
        assert np.array_equal(np.asarray(img), np.arange(16, dtype=np.uint8).reshape(4, 4) * 16)
    wide = np.full((30, 90), 77, np.uint8)
    with Image.open(io.BytesIO(pixels.downsize_png(_png(wide), 64))) as img:
        assert img.size == (64, 21)  # not an integer ratio: Lanczos, the long side as asked
    with Image.open(io.BytesIO(pixels.downsize_png(_png(wide), 256))) as img:
        assert img.size == (90, 30)  # never enlarged


@pytest.mark.parametrize("variant", [None, 16], ids=["variant off", "variant on"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_process_image_refuses_every_broken_image_whatever_the_variant(case: str, variant: int | None) -> None:
    data, _ = BROKEN[case]
    with pytest.raises(UndecodableImageError):
        pixels.process_image(data, hashlib.sha256(data).hexdigest(), "raw/x.png", variant)


@pytest.mark.parametrize("variant", [None, 16], ids=["variant off", "variant on"])
def test_process_image_publishes_a_sound_gray8_image_as_it_is(variant: int | None) -> None:
    for data in (GOOD, build_png(37, 29, adam7_rows(37, 29), interlace=1)):
        done = pixels.process_image(data, hashlib.sha256(data).hexdigest(), "raw/x.png", variant)
        assert (done.png, done.converted, done.sha256) == (None, False, hashlib.sha256(data).hexdigest())
        assert (done.small is None) == (variant is None)


def test_an_image_to_convert_is_checked_too_not_only_decoded() -> None:
    rgb = build_png(40, 30, (b"\0" + bytes(120)) * 20, color=2)  # 20 of the 30 scanlines
    assert pillow_decodes(rgb)  # converting it would have published 10 made-up black rows
    with pytest.raises(UndecodableImageError, match="holds 2420 of the 3630 bytes a 40x30 RGB image"):
        pixels.process_image(rgb, hashlib.sha256(rgb).hexdigest(), "raw/x.png", None)


def test_bytes_unlike_the_manifest_still_fail_the_run_not_quarantined() -> None:
    with pytest.raises(ImageError, match="re-run extract") as caught:
        pixels.process_image(GOOD, "0" * 64, "raw/x.png", None)
    assert not isinstance(caught.value, UndecodableImageError)


def test_the_variant_made_from_the_checked_scanlines_is_the_variant_of_a_full_decode() -> None:
    """The variant of a gray8 image comes from the pixel data the decodability check inflated (no second inflate):
    its bytes are those of a Pillow decode of the PNG, for real images, every filter type and odd sizes."""
    rng = np.random.default_rng(7)
    made = [_png(rng.integers(0, 256, (h, w), dtype=np.uint8)) for h, w in ((300, 200), (37, 1030), (256, 256))]
    smooth = np.add.outer(np.arange(512), np.arange(512)).astype(np.uint8)  # Pillow picks other filters for it
    for data in [p.read_bytes() for p in REAL] + [*made, _png(smooth)]:
        info = pixels.check_png(data)
        scanlines = pixels.check_decodable(data, info, keep=True)
        assert scanlines is not None
        for side in (256, 100):
            assert pixels.downsize_scanlines(info, scanlines, side) == pixels.downsize_png(data, side)
        done = pixels.process_image(data, hashlib.sha256(data).hexdigest(), "raw/x.png", 256)
        assert done.small == pixels.downsize_png(data, 256)


def test_the_variant_of_a_real_image_is_smaller_than_pillows_and_refuses_colour() -> None:
    with Image.open(io.BytesIO(REAL[0].read_bytes())) as img:
        small = img.reduce(4)
    ours = pixels.encode_gray8(small)
    theirs = io.BytesIO()
    small.save(theirs, format="PNG", compress_level=1)
    assert len(ours) <= len(theirs.getvalue())  # Up + ISA-L level 1 against Pillow's adaptive filters + zlib level 1
    with Image.open(io.BytesIO(ours)) as img:
        assert np.array_equal(np.asarray(img), np.asarray(small))
    with pytest.raises(ValueError, match="single-channel"):
        pixels.encode_gray8(small.convert("RGB"))
