"""One raw zone, many sources: every run publishes the pixels of its own archives, never another's.

Two mirrors that differ in one image (equal in size, so only the bytes tell them apart) run into one store
one after the other, at the same time, or one replacing the other in place with its mtime set back; an
unchanged rerun still skips extraction without reading a byte of its archives.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.errors import BadDataError
from pipeline.ingest import extract, files, rawzone, remote, sources
from pipeline.publish.manifest import read_manifest
from pipeline.store.storage import Store
from tests.integration import releases
from tests.integration.releases import CXR, new_store

pytestmark = pytest.mark.integration
IMAGES = 24
ARCHIVE = "images_001.zip"


# --- two mirrors that differ in one image of equal size ---------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def stored_png(pixels: bytes, width: int, height: int) -> bytes:
    """An 8-bit gray PNG with uncompressed pixel data: changing a pixel keeps its length."""
    rows = b"".join(b"\0" + pixels[y * width : (y + 1) * width] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows, 0)) + _chunk(b"IEND", b"")


class Mirrors:
    """A synthetic mirror and variants of it whose ``images_001.zip`` differ in the first pixel of one image."""

    def __init__(self, root: Path) -> None:
        self.root, self.base = root, root / "base"
        synthesize(SynthConfig(dest=self.base, images=IMAGES, image_size=64, seed=7, workers=1))
        with zipfile.ZipFile(self.base / ARCHIVE) as zf:
            self.members = {name: zf.read(name) for name in zf.namelist()}
        self.target = sorted(self.members)[0]
        self.name = PurePosixPath(self.target).name
        image = Image.open(io.BytesIO(self.members[self.target]))
        self.size, self.pixels = image.size, image.convert("L").tobytes()

    def png(self, value: int) -> bytes:
        return stored_png(bytes([value]) + self.pixels[1:], *self.size)

    def write_archive(self, path: Path, value: int) -> bytes:
        """Write ``images_001.zip`` (stored, fixed dates: equal size for every ``value``); return the image."""
        png = self.png(value)
        tmp = path.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for name, data in self.members.items():
                zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), png if name == self.target else data)
        if path.exists():  # rewrite in place: same inode, as a copy over an old file would
            path.write_bytes(tmp.read_bytes())
            tmp.unlink()
        else:
            tmp.rename(path)
        return png

    def mirror(self, name: str, value: int) -> tuple[Path, bytes]:
        """A copy of the mirror with this pixel value; every file's mtime is the base's (as ``cp -p`` keeps)."""
        dest = self.root / name
        shutil.copytree(self.base, dest)
        (dest / ARCHIVE).unlink()
        png = self.write_archive(dest / ARCHIVE, value)
        for path in dest.iterdir():
            base = (self.base / path.name).stat()
            os.utime(path, ns=(base.st_atime_ns, base.st_mtime_ns))
        return dest, png


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> Mirrors:
    return Mirrors(tmp_path_factory.mktemp("raw-zone"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- what a release holds ---------------------------------------------------------------------------


def published(store: Store, version: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A release's manifest and its images (name -> bytes), read from its Parquet files."""
    manifest = read_manifest(store, version)
    assert manifest is not None, f"{version} was not published"
    found: dict[str, bytes] = {}
    for entry in manifest["files"]:
        if entry["kind"] == "parquet" and entry["path"].startswith("parquet/split="):
            body = store.get_bytes(f"releases/{version}/{entry['path']}")
            table = pq.read_table(io.BytesIO(body), columns=["image_index", "image"])
            found.update(zip(table["image_index"].to_pylist(), table["image"].to_pylist(), strict=True))
    return manifest, found


def assert_holds(store: Store, version: str, source: Path, png: bytes, name: str) -> None:
    """The release holds every image of ``source``, ``name`` with exactly ``png``'s bytes, and names its archive."""
    manifest, images = published(store, version)
    assert sha256(images[name]) == sha256(png), f"{version} holds another source's {name}"
    assert manifest["sources"]["archives_sha256"][ARCHIVE] == sha256((source / ARCHIVE).read_bytes())
    figures = manifest["accounting"]
    assert (figures["input_images"], figures["published_images"], figures["quarantined_images"]) == (IMAGES, IMAGES, 0)


# --- the cases --------------------------------------------------------------------------------------


def test_two_sources_one_after_the_other_each_publish_their_own_pixels(
    mirrors: Mirrors, s3_stack: StackInfo, s3_bucket: str
) -> None:
    (one, png_one), (two, png_two) = mirrors.mirror("seq-one", 0), mirrors.mirror("seq-two", 255)
    stats = [(src / ARCHIVE).stat() for src in (one, two)]
    assert len({(st.st_size, st.st_mtime_ns) for st in stats}) == 1  # only the bytes differ
    store = new_store(s3_stack, s3_bucket)
    assert releases.publish(store, one, "first", release="v1")["published"]
    assert releases.publish(store, two, "second", release="v2")["published"]
    assert_holds(store, "v1", one, png_one, mirrors.name)
    assert_holds(store, "v2", two, png_two, mirrors.name)
    assert releases.publish(store, one, "first-again", release="v1")["published"] is False  # v1's inputs: same


def test_two_sources_at_the_same_time_each_publish_their_own_pixels(
    mirrors: Mirrors, s3_stack: StackInfo, s3_bucket: str
) -> None:
    (one, png_one), (two, png_two) = mirrors.mirror("race-one", 0), mirrors.mirror("race-two", 255)
    store = new_store(s3_stack, s3_bucket)
    env = {**os.environ, **s3_stack.env(), "CXR_UPLOAD_WORKERS": "2"}
    runs = [
        subprocess.Popen(
            [CXR, "run", "--source", str(src), "--store", store.uri(""), "--release", version],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for src, version in ((one, "v1"), (two, "v2"))
    ]
    done = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in done]
    assert [out.splitlines()[0] for out, _ in done] == ["release v1: published", "release v2: published"]
    assert_holds(store, "v1", one, png_one, mirrors.name)
    assert_holds(store, "v2", two, png_two, mirrors.name)


def test_an_archive_replaced_by_one_of_equal_size_and_mtime_is_extracted_again(
    mirrors: Mirrors, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src, _ = mirrors.mirror("in-place", 0)
    store = new_store(s3_stack, s3_bucket)
    assert releases.publish(store, src, "before", release="v1")["published"]
    before = (src / ARCHIVE).stat()
    png = mirrors.write_archive(src / ARCHIVE, 255)  # same inode, same size
    os.utime(src / ARCHIVE, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = (src / ARCHIVE).stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert releases.publish(store, src, "after", release="v2")["published"]
    assert_holds(store, "v2", src, png, mirrors.name)


def test_an_unchanged_rerun_skips_extraction_without_reading_the_archives(
    mirrors: Mirrors, s3_stack: StackInfo, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _ = mirrors.mirror("unchanged", 0)
    store = new_store(s3_stack, s3_bucket)
    first = [extract.extract_shard(store, ref, 4) for ref in sources.discover(str(src)).shards]
    reads: list[str] = []

    def no_read(self: remote.LocalRanges, start: int, length: int) -> bytes:
        reads.append(self.location)
        raise AssertionError(f"{self.location} was read")

    monkeypatch.setattr(remote.LocalRanges, "read_range", no_read)
    again = [extract.extract_shard(store, ref, 4) for ref in sources.discover(str(src)).shards]
    assert reads == []
    assert all(r.skipped for r in again)
    assert [r.archive_sha256 for r in again] == [r.archive_sha256 for r in first]


def test_a_moved_mirror_is_hashed_not_extracted_again(mirrors: Mirrors, s3_stack: StackInfo, s3_bucket: str) -> None:
    src, _ = mirrors.mirror("moved", 0)
    store = new_store(s3_stack, s3_bucket)
    first = {r.shard: r for r in (extract.extract_shard(store, ref, 4) for ref in sources.discover(str(src)).shards)}
    src = src.rename(src.with_name("moved-elsewhere"))
    stamps = {info.key: info.etag for info in store.list("raw/shards/") if "/seen/" not in info.key}
    again = [extract.extract_shard(store, ref, 4) for ref in sources.discover(str(src)).shards]
    assert all(r.skipped for r in again)
    assert {r.shard: r.archive_sha256 for r in again} == {k: r.archive_sha256 for k, r in first.items()}
    assert {info.key: info.etag for info in store.list("raw/shards/") if "/seen/" not in info.key} == stamps


def test_a_local_archive_that_changes_while_it_is_read_fails_clearly(
    mirrors: Mirrors, s3_stack: StackInfo, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _ = mirrors.mirror("changing", 0)
    store = new_store(s3_stack, s3_bucket)
    ref = next(r for r in sources.discover(str(src)).shards if r.name == ARCHIVE)
    first = extract.extract_shard(store, ref, 4)
    mirrors.write_archive(src / ARCHIVE, 255)  # new content: hashed first, then extracted
    hashed = extract._prehash

    def prehash_then_change(ref: files.FileRef, limits: Any) -> Any:
        digests = hashed(ref, limits)
        data = bytearray((src / ARCHIVE).read_bytes())
        data[data.find(b"IDAT") + 40] ^= 0xFF  # a writer still at work: same size, other bytes
        (src / ARCHIVE).write_bytes(bytes(data))
        return digests

    monkeypatch.setattr(extract, "_prehash", prehash_then_change)
    with pytest.raises(BadDataError, match=r"images_001\.zip changed while this run read it .*rerun once"):
        extract.extract_shard(store, sources.discover(str(src)).shards[0], 4)
    prefix = f"{rawzone.shard_prefix(ARCHIVE)}/archives/"
    versions = {info.key.removeprefix(prefix).split("/")[0] for info in store.list(prefix)}
    assert versions == {first.archive_sha256}  # nothing was recorded for the half-read file


def test_a_file_replaced_in_an_unpacked_folder_is_extracted_again(
    mirrors: Mirrors, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src = mirrors.root / "folder"
    src.mkdir()
    shutil.copy(mirrors.base / "Data_Entry_2017.csv", src)
    folder = src / "images_001" / "images"
    folder.mkdir(parents=True)
    for member, data in mirrors.members.items():
        (folder / PurePosixPath(member).name).write_bytes(mirrors.png(0) if member == mirrors.target else data)
    store = new_store(s3_stack, s3_bucket)
    (first,) = [extract.extract_shard(store, ref, 4) for ref in sources.discover(str(src), shards=("1",)).shards]
    path = folder / mirrors.name
    before = path.stat()
    path.write_bytes(mirrors.png(255))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    (second,) = [extract.extract_shard(store, ref, 4) for ref in sources.discover(str(src), shards=("1",)).shards]
    assert not second.skipped
    assert second.archive_sha256 != first.archive_sha256
    rows = pq.read_table(io.BytesIO(store.get_bytes(f"{second.prefix}/manifest.parquet"))).to_pandas()
    key = rows.set_index("image_index").loc[mirrors.name, "key"]
    assert store.get_bytes(key) == mirrors.png(255)
