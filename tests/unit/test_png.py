"""PNG structure on the real NIH images and on broken copies built here: chunk integrity, bytes after IEND,
chunk floods, and decodability (PNGs whose chunks are all sound, valid CRCs so extract lets them land, but whose
pixels cannot be decoded are refused with their reason, and the structural check agrees with a full Pillow decode
on each of them)."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline import png as images
from pipeline.errors import ImageError, UndecodableImageError
from pipeline.ingest import extract
from pipeline.ingest.archives import Member
from tests.reference import IMAGES as REAL


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def build_png(
    width: int,
    height: int,
    raw: bytes,
    *,
    depth: int = 8,
    color: int = 0,
    interlace: int = 0,
    extra: tuple[bytes, ...] = (),
    idat_parts: int = 1,
    packed: bytes | None = None,
) -> bytes:
    """A PNG from already-filtered scanline bytes (or an IDAT payload as it is), every chunk CRC computed (so
    ``check_png`` passes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    packed = zlib.compress(raw) if packed is None else packed
    step = -(-len(packed) // idat_parts)
    idats = b"".join(_chunk(b"IDAT", packed[i : i + step]) for i in range(0, len(packed), step))
    return images.PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + b"".join(extra) + idats + _chunk(b"IEND", b"")


def gray_rows(width: int, height: int, filter_type: int = 0) -> bytes:
    rng = np.random.default_rng(width * 31 + height)
    pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
    return b"".join(bytes([filter_type]) + row.tobytes() for row in pixels)


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def adam7_rows(width: int, height: int, bits: int = 8) -> bytes:
    """Filter-0 scanlines of every non-empty Adam7 pass of an image of ``bits`` bits a pixel."""
    out = b""
    for x0, y0, dx, dy in ADAM7:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            out += (b"\0" + bytes(i * 37 % 256 for i in range((w * bits + 7) // 8))) * h
    return out


def pillow_decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception:
        return False
    return True


def _check(data: bytes) -> None:
    images.check_decodable(data, images.check_png(data))


GOOD = build_png(40, 30, gray_rows(40, 30))
PACKED = zlib.compress(gray_rows(40, 30))
#: name -> (a PNG whose every chunk CRC is valid, what the refusal says)
BROKEN: dict[str, tuple[bytes, str]] = {
    "truncated IDAT data": (build_png(40, 30, gray_rows(40, 30)[:-200]), "holds 1030 of the 1230 bytes"),
    "IHDR larger than the data": (build_png(40, 300, gray_rows(40, 30)), "IHDR claims a larger image"),
    "bit depth 3": (build_png(40, 30, gray_rows(40, 30), depth=3), "unsupported bit depth 3 for colour type 0"),
    "16-bit palette": (build_png(40, 30, gray_rows(80, 30), depth=16, color=3), "bit depth 16 for colour type 3"),
    "filter type 9": (build_png(40, 30, gray_rows(40, 30, filter_type=9)), "scanline 0 of the 40x30 L image"),
    "IDAT not zlib": (build_png(40, 30, b"", packed=b"\x78\x9c" + bytes(range(7, 250))), "not a valid zlib stream"),
    "wrong zlib checksum": (
        build_png(40, 30, b"", packed=PACKED[:-1] + bytes([PACKED[-1] ^ 1])),
        "its Adler-32 checksum does not match the inflated data",
    ),
    "no end of stream": (build_png(40, 30, b"", packed=PACKED[:-4]), "its zlib stream has no end"),
    "more data than IHDR": (build_png(40, 30, gray_rows(40, 31)), "holds more than the 1230 bytes a 40x30 L image"),
    "bytes after the stream": (build_png(40, 30, b"", packed=PACKED + b"hidden"), "6 bytes after the end of its zlib"),
}


def test_real_images_pass_and_are_gray8() -> None:
    assert len(REAL) == 8
    for path in REAL:
        info = images.check_png(path.read_bytes())
        assert (info.width, info.height, info.mode, info.is_gray8) == (1024, 1024, "L", True)


def test_flipped_byte_is_a_crc_error_naming_the_chunk() -> None:
    data = bytearray(REAL[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ImageError, match="CRC mismatch in a IDAT chunk"):
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
    with pytest.raises(ImageError, match=message):
        images.check_png(mutate(REAL[1].read_bytes()))  # type: ignore[operator]


# --- only PNG in a PNG: bytes after IEND, chunk floods ------------------------------------------------------------


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
    with pytest.raises(ImageError, match=f"PNG holds {message} \\(a chunk flood"):
        images.check_png(flooded)
    row, digest = extract.check(Member("images/00000001_002.png", flooded), "images_001.zip", "raw/shards/images_001")
    assert (row["status"], digest) == ("quarantined", None)
    assert "chunk flood" in row["reason"]


def test_too_many_chunks_of_any_kind_is_a_flood_and_real_images_are_far_below_every_limit() -> None:
    empty_idat = _chunk(b"IDAT", b"")
    png = REAL[3].read_bytes()
    at = png.rindex(b"IEND") - 4
    flooded = png[:at] + empty_idat * images.MAX_CHUNKS + png[at:]
    with pytest.raises(ImageError, match="more than 100000 chunks"):
        images.check_png(flooded)
    xmp = _chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + b"<x:xmpmeta/>" * 300)  # what the RGBA ones carry
    assert images.check_png(_with_chunks_after_ihdr(png, xmp)).end == len(png) + len(xmp)


# --- decodability: sound chunks, pixels that cannot be decoded -------------------------------------------------------


def test_sound_images_pass_the_check_real_synthetic_interlaced_and_split_idat() -> None:
    for path in REAL:
        _check(path.read_bytes())
    _check(GOOD)
    _check(build_png(40, 30, gray_rows(40, 30), idat_parts=5))
    interlaced = build_png(37, 29, adam7_rows(37, 29), interlace=1)
    _check(interlaced)
    assert pillow_decodes(interlaced)
    out = io.BytesIO()
    Image.fromarray(np.arange(35 * 27, dtype=np.uint8).reshape(27, 35) % 251, "L").save(out, "PNG", interlace=1)
    _check(out.getvalue())  # Pillow does not write Adam7, but reads it: this one is plain despite the flag
    assert images.read_header(interlaced).is_gray8


@pytest.mark.parametrize("mode", ["1", "L", "I;16", "LA", "RGB", "RGBA", "P"])
def test_every_mode_pillow_writes_passes_and_sub_byte_interlaced_scanlines_are_sized_right(mode: str) -> None:
    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, (23, 45, 3), dtype=np.uint8), "RGB")
    img = base.convert("I").point(lambda v: v * 200).convert("I;16") if mode == "I;16" else base.convert(mode)
    out = io.BytesIO()
    img.save(out, format="PNG")
    _check(out.getvalue())
    for depth, color, bits in ((1, 0, 1), (2, 0, 2), (4, 3, 4), (16, 0, 16), (16, 6, 64)):
        extra = (_chunk(b"PLTE", bytes(48)),) if color == 3 else ()
        data = build_png(13, 11, adam7_rows(13, 11, bits), depth=depth, color=color, interlace=1, extra=extra)
        _check(data)
        assert pillow_decodes(data), (depth, color)
        with pytest.raises(UndecodableImageError, match="interlaced image needs"):
            _check(build_png(13, 11, adam7_rows(13, 11, bits)[:-1], depth=depth, color=color, interlace=1, extra=extra))


@pytest.mark.parametrize("case", list(BROKEN))
def test_an_undecodable_image_with_valid_crcs_is_refused_with_its_reason(case: str) -> None:
    data, says = BROKEN[case]
    info = images.check_png(data)  # extract's check lets it land: every chunk CRC is right
    with pytest.raises(UndecodableImageError, match=says):
        images.check_decodable(data, info)


#: Broken images a Pillow decode lets through without an error (so its decode is no proof of decodability).
PILLOW_SILENT = {
    "IHDR larger than the data",
    "no end of stream",
    "more data than IHDR",
    "bytes after the stream",
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_check_refuses_all_that_a_pillow_decode_refuses_and_what_it_lets_through(case: str) -> None:
    assert pillow_decodes(GOOD)
    assert pillow_decodes(BROKEN[case][0]) == (case in PILLOW_SILENT), case


def test_pillow_fills_pixel_data_that_ends_on_a_scanline_boundary_with_zeros() -> None:
    data = BROKEN["IHDR larger than the data"][0]  # 30 scanlines of data, 300 in IHDR
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        pixels = np.asarray(img)
    assert pixels.shape == (300, 40)
    assert not pixels[30:].any()  # what the variant would have been made from


def test_a_palette_image_without_its_palette_is_refused() -> None:
    data = build_png(40, 30, gray_rows(40, 30), color=3)
    assert pillow_decodes(data)  # with colours of its own making
    with pytest.raises(UndecodableImageError, match="without a PLTE chunk"):
        _check(data)
    palette = _chunk(b"PLTE", bytes(range(256)) * 3)
    _check(build_png(40, 30, gray_rows(40, 30), color=3, extra=(palette,)))


def test_the_decodability_check_can_keep_the_pixel_data_it_inflated() -> None:
    rows = gray_rows(40, 30)
    data = build_png(40, 30, rows)
    assert images.check_decodable(data, images.check_png(data)) is None
    assert images.check_decodable(data, images.check_png(data), keep=True) == rows


def _pillow_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def _filtered(pixels: np.ndarray, kinds: list[int]) -> bytes:
    """Scanlines of ``pixels`` with each row's filter type from ``kinds`` (0 None, 1 Sub, 2 Up)."""
    out, above = b"", np.zeros(pixels.shape[1], np.uint8)
    for row, kind in zip(pixels, kinds, strict=True):
        left = np.concatenate([[0], row[:-1]]).astype(np.uint8)
        body = {0: row, 1: row - left, 2: row - above}[kind]
        out += bytes([kind]) + body.astype(np.uint8).tobytes()
        above = row
    return out


@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1), (256, 256), (37, 211), (1024, 64)])
def test_our_gray8_layout_round_trips_every_pixel_and_passes_every_check(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    gray[0, 0], gray[-1, -1] = 0, 255  # both ends of the wrap-around of the Up filter
    data = images.encode_gray8(gray)
    info = images.check_png(data)
    assert (info.width, info.height, info.mode) == (shape[1], shape[0], "L")
    images.check_decodable(data, info)
    assert np.array_equal(_pillow_pixels(data), gray), "any PNG reader gets the pixels back"
    ours = images.decode_gray8(data)
    assert ours is not None
    assert np.array_equal(ours, gray), "and so does our own fast path"
    assert ours.flags.writeable
    with pytest.raises(ValueError, match="2-D uint8"):
        images.encode_gray8(gray.astype(np.uint16))


@pytest.mark.parametrize("kinds", ["none", "sub", "mixed none and up", "paeth (pillow's own)"])
def test_fast_decode_equals_pillow_whatever_the_row_filters(kinds: str) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (20, 33), dtype=np.uint8)
    if kinds == "paeth (pillow's own)":
        out = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(out, format="PNG")
        data = out.getvalue()
    else:
        rows = {"none": [0] * 20, "sub": [1] * 20, "mixed none and up": [0, 2, 2, 0, 2] * 4}[kinds]
        data = build_png(33, 20, _filtered(pixels, rows), idat_parts=3)
    assert np.array_equal(images.decode_gray8(data), pixels)


def test_fast_decode_of_real_images_equals_pillow_and_leaves_other_layouts_to_it() -> None:
    for path in REAL[:3]:
        data = path.read_bytes()
        pixels = images.decode_gray8(data)
        assert pixels is not None
        assert np.array_equal(pixels, _pillow_pixels(data)), path.name
        assert pixels.flags.writeable, "a tensor made from it may be changed in place (a transform)"
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    interlaced = build_png(16, 16, adam7_rows(16, 16), interlace=1)
    short = build_png(40, 30, gray_rows(40, 30)[:-41])  # one scanline missing: Pillow names the problem
    bad_check = build_png(40, 30, b"", packed=PACKED[:-4] + bytes(4))
    bomb = build_png(4, 4, bytes(50 << 20))  # 50 MB of pixel data behind a 4x4 header: never inflated whole
    for other in (out.getvalue(), interlaced, short, bad_check, bomb, b"not a png"):
        assert images.decode_gray8(other) is None


@pytest.mark.parametrize("size", [0, 1, 0xFFFF, 0x10000, 200_003])
def test_stored_stream_is_a_zlib_stream_of_the_bytes(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    stream = images.stored_stream(data)
    assert zlib.decompress(stream) == data
    assert len(stream) == len(data) + 2 + 4 + 5 * max(1, -(-size // 0xFFFF))  # header, blocks, Adler-32: no more
