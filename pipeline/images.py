"""PNG integrity checks and the few conversions an image may need.

Most NIH images are 8-bit grayscale and are published with their original bytes: checking
them costs a walk over the chunk CRCs (well under 1 ms), not a decode (12-14 ms). Only images
in another mode (RGBA, LA, 16-bit, palette) are decoded once and re-encoded as 8-bit grayscale.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

from pipeline.errors import BadDataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}


class ImageError(BadDataError, ValueError):
    """The bytes are not a sound PNG; the message says why."""


@dataclass(frozen=True)
class PngInfo:
    """What a PNG header says about the image."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def mode(self) -> str:
        """Pillow-style mode name, with the bit depth when it is not 8 (``L``, ``RGBA``, ``L;16``)."""
        base = _COLOR_TYPES.get(self.color_type, f"type{self.color_type}")
        return base if self.bit_depth == 8 else f"{base};{self.bit_depth}"

    @property
    def is_gray8(self) -> bool:
        """True when the image is already single-channel 8-bit."""
        return self.color_type == 0 and self.bit_depth == 8


def read_header(data: bytes) -> PngInfo:
    """Parse the signature and IHDR chunk without decoding pixels."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageError("not a PNG (bad signature)")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageError("PNG truncated before its IHDR header")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    if width == 0 or height == 0:
        raise ImageError(f"PNG header gives an empty image ({width}x{height})")
    if color not in _COLOR_TYPES:
        raise ImageError(f"PNG header has unknown colour type {color}")
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageError(
            f"PNG header claims {width}x{height} pixels, over the decompression-bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS} (Pillow's guard); not decoded"
        )
    return PngInfo(width, height, depth, color)


def check_png(data: bytes) -> PngInfo:
    """Verify every chunk's CRC and that the stream ends with IEND; return the header info."""
    info = read_header(data)
    pos, end = len(PNG_SIGNATURE), len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk_end = pos + 12 + length
        if chunk_end > end:
            raise ImageError(f"PNG truncated inside a {data[pos + 4 : pos + 8]!r} chunk")
        kind = data[pos + 4 : pos + 8]
        (crc,) = struct.unpack(">I", data[chunk_end - 4 : chunk_end])
        if zlib.crc32(data[pos + 4 : chunk_end - 4]) != crc:
            raise ImageError(f"PNG CRC mismatch in a {kind.decode('latin-1')} chunk at byte {pos}")
        if kind == b"IEND":
            return info
        pos = chunk_end
    raise ImageError("PNG truncated: no IEND chunk")


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
        import numpy as np

        arr = np.asarray(img, dtype=np.uint32)
        return Image.fromarray((arr >> 8).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "La"):
        return img.getchannel(0)
    return img.convert("L")


def downsize_png(data: bytes, long_side: int, compress_level: int = 1) -> bytes:
    """Decode a PNG and return a lossless PNG whose long side is ``long_side`` (8-bit grayscale).

    An exact integer reduction (1024 -> 256) averages whole pixel blocks (area resampling, fast);
    other ratios use Lanczos after a coarse integer reduction. Smaller images are only re-encoded.
    """
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        gray = _to_gray8(img) if img.mode != "L" else img
        small = _shrink(gray, long_side)
    out = io.BytesIO()
    small.save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()


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
    """Check one raw image against its manifest; convert it if not 8-bit gray; make the variant.

    Module-level (and in this light module) so a process pool can run it. Only images that need
    it are decoded.

    Raises:
        ImageError: the bytes differ from the manifest's sha256 or are not a sound PNG.
    """
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ImageError(f"raw object {key} does not match its manifest sha256; re-run extract")
    info = check_png(data)
    if info.is_gray8:
        small = downsize_png(data, variant_size) if variant_size else None
        return Processed(None, small, False, expected_sha256)
    png = to_gray8_png(data)
    small = downsize_png(png, variant_size) if variant_size else None
    return Processed(png, small, True, hashlib.sha256(png).hexdigest())
