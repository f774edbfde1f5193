"""Pixels: prove an image decodes, convert it to 8-bit grayscale when it is not, and make its downsized variant.

Most NIH images are 8-bit grayscale and are published with their original bytes (checked, not decoded). Only
images in another mode (RGBA, LA, 16-bit, palette) are decoded once and re-encoded as 8-bit grayscale, and
only the variant (``variant_size``) needs a decode of the others. PNG structure (headers, CRCs, decodability)
is :mod:`pipeline.png`'s.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline import png
from pipeline.errors import ImageError, UndecodableImageError
from pipeline.png import PngInfo, check_decodable, check_png, stored_stream


def to_gray8_png(data: bytes, compress_level: int = 6) -> bytes:
    """Decode any PNG and re-encode it as 8-bit single-channel (luminance for colour, alpha dropped)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        gray = _to_gray8(img)
    out = io.BytesIO()
    gray.save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()


def _to_gray8(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit gray: keep the top 8 bits, the standard reduction to 8-bit.
        arr = np.asarray(img, dtype=np.uint32)
        return Image.fromarray((arr >> 8).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "La"):
        return img.getchannel(0)
    return img.convert("L")


def downsize_png(data: bytes, long_side: int) -> bytes:
    """Decode a PNG and return a lossless PNG whose long side is ``long_side`` (8-bit grayscale, :func:`encode_gray8`).

    An exact integer reduction (1024 -> 256) averages whole pixel blocks (area resampling, fast);
    other ratios use Lanczos after a coarse integer reduction. Smaller images are only re-encoded.
    """
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        gray = _to_gray8(img) if img.mode != "L" else img
        return encode_gray8(_shrink(gray, long_side))


def downsize_scanlines(info: PngInfo, scanlines: bytes, long_side: int) -> bytes:
    """The variant of a non-interlaced 8-bit gray PNG from its inflated image data (what
    :func:`pipeline.png.check_decodable` returns with ``keep``), without inflating the PNG a second time.

    The scanlines go to Pillow's PNG decoder wrapped in stored (uncompressed) deflate blocks, so it only
    unfilters them: the pixels, and so the bytes returned, are those of :func:`downsize_png` on the PNG.
    """
    img = Image.frombytes("L", (info.width, info.height), stored_stream(scanlines), "zip", "L")
    return encode_gray8(_shrink(img, long_side))


def encode_gray8(img: Image.Image) -> bytes:
    """A PNG of an 8-bit gray image (:func:`pipeline.png.encode_gray8`: every row Up-filtered, deflated at level 1).

    Raises:
        ValueError: the image is not single-channel.
    """
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim != 2:
        raise ValueError(f"encode_gray8 takes a single-channel image, not mode {img.mode}")
    return png.encode_gray8(pixels)


def _shrink(img: Image.Image, long_side: int) -> Image.Image:
    side = max(img.size)
    if side <= long_side:
        return img
    if side % long_side == 0 and img.size[0] % (side // long_side) == 0 and img.size[1] % (side // long_side) == 0:
        return img.reduce(side // long_side)
    scale = long_side / side
    size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


@dataclass(frozen=True)
class Processed:
    """What publishing one image takes: its converted bytes (None when the raw bytes are published as they
    are, so a worker process never sends them back), its downsized variant and the published bytes' sha256."""

    png: bytes | None
    small: bytes | None
    converted: bool
    sha256: str


def process_image(data: bytes, expected_sha256: str, key: str, variant_size: int | None) -> Processed:
    """Check one raw image against its manifest, prove it decodes, convert it if not 8-bit gray, make the variant.

    Module-level (and in this light module) so a process pool can run it. Every image goes through
    :func:`pipeline.png.check_decodable` first, also when it is decoded afterwards: Pillow fills the missing rows
    of an image whose pixel data ends early on a scanline boundary with zeros and reports no error, so its decode
    alone proves nothing. Only images that need it are decoded (converted, or to make the variant); the variant of
    an 8-bit gray image is made from the pixel data that check inflated (:func:`downsize_scanlines`).

    Raises:
        ImageError: the bytes differ from the manifest's sha256 (the raw zone changed: the run fails).
        UndecodableImageError: the image cannot be decoded; the message says why (the caller quarantines it).
    """
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ImageError(f"raw object {key} does not match its manifest sha256; re-run extract")
    try:
        info = check_png(data)
    except ImageError as exc:
        raise UndecodableImageError(str(exc)) from exc
    simple = info.is_gray8 and data[28] == 0  # not interlaced: its scanlines are the image's rows
    scanlines = check_decodable(data, info, keep=bool(variant_size) and simple)
    try:
        if scanlines is not None and variant_size:
            return Processed(None, downsize_scanlines(info, scanlines, variant_size), False, expected_sha256)
        if info.is_gray8:
            return Processed(None, downsize_png(data, variant_size) if variant_size else None, False, expected_sha256)
        png = to_gray8_png(data)
        small = downsize_png(png, variant_size) if variant_size else None
    except MemoryError:
        raise
    except Exception as exc:  # any other failure to decode these bytes is a fact about the image: quarantined
        raise UndecodableImageError(f"the PNG decoder failed on it ({type(exc).__name__}: {exc})") from exc
    return Processed(png, small, True, hashlib.sha256(png).hexdigest())
