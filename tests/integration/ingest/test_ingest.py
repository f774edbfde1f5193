"""Ingest against the real local S3: every source kind, reruns, a killed run, and hostile archives.

The raw zone is always compared with the archives' members byte for byte.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.errors import BadDataError
from pipeline.ingest import extract, files, rawzone, sources
from pipeline.plan import crosscheck
from pipeline.plan import planning as plan
from pipeline.store.storage import Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration
CXR = str(Path(sys.executable).with_name("cxr"))
CSVS = ("Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt", "test_list.txt")


# --- building sources -----------------------------------------------------------------------------


def _synth_images(tmp: Path, images: int, seed: int) -> dict[str, bytes]:
    """A synthetic mirror's images (name -> PNG bytes); its CSVs stay in ``tmp``."""
    synthesize(SynthConfig(dest=tmp, images=images, image_size=64, seed=seed, workers=1))
    found: dict[str, bytes] = {}
    for archive in sorted(tmp.glob("images_*.zip")):
        with zipfile.ZipFile(archive) as zf:
            found.update({PurePosixPath(n).name: zf.read(n) for n in zf.namelist()})
        archive.unlink()
    return found


def write_archive(path: Path, members: dict[str, bytes]) -> None:
    """A zip (deflated) or tar.gz holding ``members`` (member path -> bytes)."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def make_mirror(
    dest: Path, *, kind: str, images: int = 24, shards: int = 2, seed: int = 5
) -> dict[str, dict[str, bytes]]:
    """A source folder with ``shards`` archives of ``kind`` and the CSVs; returns archive -> members."""
    dest.mkdir(parents=True, exist_ok=True)
    pngs = sorted(_synth_images(dest, images, seed).items())
    layout: dict[str, dict[str, bytes]] = {}
    for i in range(shards):
        name = f"images_{i + 1:03d}.zip" if kind == "zip" else f"images_{i + 1:02d}.tar.gz"
        layout[name] = {f"images_{i + 1:03d}/images/{n}": data for n, data in pngs[i::shards]}
        write_archive(dest / name, layout[name])
    return layout


def raw_key(archive: str, name: str, data: bytes) -> str:
    """Where an image's bytes land: content-addressed under its shard's stem."""
    return f"raw/shards/{sources.shard_stem(archive)}/images/{hashlib.sha256(data).hexdigest()}/{name}"


def expected_raw(layout: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
    return {
        raw_key(archive, PurePosixPath(m).name, data): data
        for archive, members in layout.items()
        for m, data in members.items()
    }


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- reading the store ----------------------------------------------------------------------------


def store_for(stack: StackInfo, bucket: str, prefix: str) -> Store:
    cfg = StoreConfig(f"s3://{bucket}/{prefix}", stack.endpoint_url, stack.access_key_id, stack.secret_access_key)
    return Store(cfg)


def raw_zone(store: Store) -> dict[str, bytes]:
    return {info.key: store.get_bytes(info.key) for info in store.list("raw/shards/") if "/images/" in info.key}


def manifest(store: Store, archive: str, sha256: str) -> pd.DataFrame:
    """The raw manifest of one archive's content."""
    frame: pd.DataFrame = pq.read_table(
        io.BytesIO(store.get_bytes(f"{rawzone.archive_prefix(archive, sha256)}/manifest.parquet"))
    ).to_pandas()
    return frame


def ingest(store: Store, source: str, **kw: Any) -> list[rawzone.ShardResult]:
    listing = sources.discover(source, **kw)
    return [extract.extract_shard(store, ref, upload_workers=8) for ref in listing.shards]


@pytest.fixture
def aws_env(s3_stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3_stack.env().items():
        monkeypatch.setenv(key, value)


# --- an HTTP server the tests start ---------------------------------------------------------------


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves a folder with Range support; in flaky mode every first response breaks off half-way."""

    flaky = False
    broken: set[str] = set()  # noqa: RUF012 - per-server state, set by the fixture

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        wanted = self.headers.get("Range", "")
        if not path.is_file() or not wanted.startswith("bytes="):
            super().do_GET()
            return
        data = path.read_bytes()
        first, _, last = wanted[6:].partition("-")
        start, end = int(first), min(int(last or len(data) - 1), len(data) - 1)
        body = data[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
        self.end_headers()
        key = f"{self.path}:{start}"
        if self.flaky and len(body) > 1000 and key not in self.broken:
            self.broken.add(key)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


def serve(folder: Path, handler: type[SimpleHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# --- each source kind -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_directory_source_lands_every_member_byte_for_byte(
    kind: str, tmp_path: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    layout = make_mirror(tmp_path / "src", kind=kind)
    store = store_for(s3_stack, s3_bucket, "cxr")
    results = ingest(store, str(tmp_path / "src"))
    assert raw_zone(store) == expected_raw(layout)
    for result in results:
        rows = manifest(store, result.shard, result.archive_sha256)
        members = layout[result.shard]
        assert sorted(rows["member"]) == sorted(members)
        assert set(rows["status"]) == {"ok"}
        for row in rows.itertuples():
            assert row.sha256 == hashlib.sha256(members[row.member]).hexdigest()
            assert (row.size, row.mode, row.width, row.height) == (len(members[row.member]), "L", 64, 64)
        archive_bytes = (tmp_path / "src" / result.shard).read_bytes()
        assert result.archive_sha256 == hashlib.sha256(archive_bytes).hexdigest()


def test_unpacked_kaggle_folder_is_a_shard_and_links_in_it_are_not_followed(
    tmp_path: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src = tmp_path / "kaggle"
    layout = make_mirror(src, kind="zip", shards=2)
    folder = src / "images_002" / "images"
    folder.mkdir(parents=True)
    for member, data in layout.pop("images_002.zip").items():
        (folder / PurePosixPath(member).name).write_bytes(data)
    (src / "images_002.zip").unlink()
    (folder / "00099999_000.png").symlink_to("/etc/passwd")
    store = store_for(s3_stack, s3_bucket, "kaggle")
    results = ingest(store, str(src))
    assert [r.shard for r in results] == ["images_001.zip", "images_002"]
    expected = expected_raw(layout)
    expected.update({raw_key("images_002", p.name, p.read_bytes()): p.read_bytes() for p in folder.glob("0000*.png")})
    assert raw_zone(store) == expected
    rows = manifest(store, "images_002", results[1].archive_sha256)
    assert rows.set_index("member").loc["images/00099999_000.png", "reason"] == "symbolic link member"
    assert [r.skipped for r in ingest(store, str(src))] == [True, True]


def test_s3_prefix_source(
    tmp_path: Path, s3_stack: StackInfo, s3_bucket: str, s3_client: S3Client, aws_env: None
) -> None:
    layout = make_mirror(tmp_path / "src", kind="zip")
    for path in (tmp_path / "src").iterdir():
        s3_client.upload_file(str(path), s3_bucket, f"mirror/nih/{path.name}")
    s3_client.put_object(Bucket=s3_bucket, Key="mirror/nih/deeper/images_003.zip", Body=b"not at the top level")
    store = store_for(s3_stack, s3_bucket, "out")
    listing = sources.discover(f"s3://{s3_bucket}/mirror/nih")
    assert [ref.name for ref in listing.shards] == ["images_001.zip", "images_002.zip"]
    assert listing.shards[0].location == f"s3://{s3_bucket}/mirror/nih/images_001.zip"
    assert files.read_file(listing.data_entry) == (tmp_path / "src" / "Data_Entry_2017.csv").read_bytes()
    for ref in listing.shards:
        extract.extract_shard(store, ref, upload_workers=8)
    assert raw_zone(store) == expected_raw(layout)


@pytest.fixture
def flaky_http(tmp_path: Path) -> Iterator[tuple[str, Path, type[RangeHandler]]]:
    handler = type("Flaky", (RangeHandler,), {"flaky": True, "broken": set()})
    folder = tmp_path / "www"
    folder.mkdir()
    yield from ((url, folder, handler) for url in serve(folder, handler))


def test_http_source_resumes_broken_downloads(
    flaky_http: tuple[str, Path, type[RangeHandler]],
    s3_stack: StackInfo,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.ingest import remote

    monkeypatch.setattr(remote, "BACKOFF_FIRST_S", 0.01)
    url, folder, handler = flaky_http
    layout = make_mirror(folder, kind="zip", images=30)
    layout.update(make_mirror(folder / "tar", kind="tar.gz", images=12, shards=1, seed=9))
    (folder / "tar" / "images_01.tar.gz").rename(folder / "images_03.tar.gz")
    layout["images_03.tar.gz"] = layout.pop("images_01.tar.gz")
    store = store_for(s3_stack, s3_bucket, "web")
    results = ingest(store, url)
    assert [r.shard for r in results] == ["images_001.zip", "images_002.zip", "images_03.tar.gz"]
    assert raw_zone(store) == expected_raw(layout)
    assert handler.broken, "the server never broke a response: the resume path was not exercised"


def test_http_server_without_index_or_range_support(tmp_path: Path, s3_stack: StackInfo, s3_bucket: str) -> None:
    class Plain(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def list_directory(self, path: Any) -> None:
            self.send_error(403, "no listing")

    layout = make_mirror(tmp_path / "www", kind="tar.gz")
    store = store_for(s3_stack, s3_bucket, "plain")
    for url in serve(tmp_path / "www", Plain):
        listing = sources.discover(url)
        assert [r.name for r in listing.shards] == ["images_01.tar.gz", "images_02.tar.gz"]
        assert listing.train_val is not None
        for ref in listing.shards:
            extract.extract_shard(store, ref, upload_workers=4)
    assert raw_zone(store) == expected_raw(layout)


# --- reruns -----------------------------------------------------------------------------------------


def test_rerun_skips_unchanged_shards_and_redoes_only_a_changed_one(
    tmp_path: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src = tmp_path / "src"
    layout = make_mirror(src, kind="zip")
    store = store_for(s3_stack, s3_bucket, "rerun")
    first = ingest(store, str(src))
    rawzone.record_sources(store, sources.discover(str(src)), "run 1")
    recorded = json.loads(store.get_bytes("raw/runs/run_1/source_manifest.json"))
    by_name = {f["name"]: f for f in recorded["files"]}
    assert {r.shard: by_name[r.shard]["sha256"] for r in first} == {r.shard: r.archive_sha256 for r in first}
    csv = (src / "Data_Entry_2017.csv").read_bytes()
    assert by_name["Data_Entry_2017.csv"]["sha256"] == hashlib.sha256(csv).hexdigest()
    assert by_name["images_001.zip"]["location"] == str(src / "images_001.zip")
    stamps = {o.key: o.etag for o in store.list("raw/")}
    before = raw_zone(store)
    again = ingest(store, str(src))
    assert [r.skipped for r in again] == [True, True]
    assert {o.key: o.etag for o in store.list("raw/")} == stamps
    # Shard 2 changes: one image dropped, one replaced; shard 1 is only touched (same bytes, new mtime).
    members = dict(layout["images_002.zip"])
    dropped, changed = sorted(members)[:2]
    del members[dropped]
    members[changed] = _synth_images(tmp_path / "other", 1, seed=99).popitem()[1]
    (src / "images_002.zip").unlink()
    write_archive(src / "images_002.zip", members)
    layout["images_002.zip"] = members
    os.utime(src / "images_001.zip")
    third = {r.shard: r for r in ingest(store, str(src))}
    assert third["images_001.zip"].skipped  # new fingerprint, but hashed: the same bytes are extracted already
    assert third["images_001.zip"].archive_sha256 == first[0].archive_sha256
    assert not third["images_002.zip"].skipped
    assert third["images_002.zip"].uploaded == 1
    assert third["images_002.zip"].archive_sha256 == file_sha256(src / "images_002.zip")
    assert sorted(manifest(store, "images_002.zip", third["images_002.zip"].archive_sha256)["member"]) == sorted(
        members
    )
    now = raw_zone(store)
    assert now.items() >= expected_raw(layout).items()
    assert now.items() >= before.items()  # nothing is deleted: another run may still use the first version
    assert [r.skipped for r in ingest(store, str(src))] == [True, True]


def test_md5_list_is_verified_and_a_mismatch_names_the_archive(
    tmp_path: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    src = tmp_path / "src"
    make_mirror(src, kind="tar.gz")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    (src / "MD5_checksums.txt").write_text("".join(f"{v}  {k}\n" for k, v in md5.items()))
    store = store_for(s3_stack, s3_bucket, "md5")
    results = ingest(store, str(src))
    assert [(r.md5_verified, r.md5) for r in results] == [(True, md5[r.shard]) for r in results]
    md5["images_02.tar.gz"] = "0" * 32
    (tmp_path / "sums.txt").write_text("".join(f"{v}  {k}\n" for k, v in md5.items()))
    listing = sources.discover(str(src), checksums=str(tmp_path / "sums.txt"))
    mismatch = r"images_02\.tar\.gz .*md5 [0-9a-f]{32} does not match 0{32}.*re-download"
    with pytest.raises(BadDataError, match=mismatch):  # known archive: its recorded md5 is checked
        extract.extract_shard(store, listing.shards[1])
    fresh = store_for(s3_stack, s3_bucket, "md5-fresh")
    with pytest.raises(BadDataError, match=mismatch):  # read again: the streamed md5 is checked
        extract.extract_shard(fresh, listing.shards[1])
    assert not any(fresh.list("raw/shards/images_02/archives/"))


# --- a killed run -----------------------------------------------------------------------------------


def _cxr(args: list[str], stack: StackInfo, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, **stack.env(), "CXR_UPLOAD_WORKERS": "4"}
    return subprocess.Popen(
        [CXR, "-v", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_killed_run_finishes_on_rerun_like_a_clean_run(tmp_path: Path, s3_stack: StackInfo, s3_bucket: str) -> None:
    src = tmp_path / "src"
    layout = make_mirror(src, kind="zip", images=800, shards=1)
    killed_store = store_for(s3_stack, s3_bucket, "killed")
    images = "raw/shards/images_001/images/"
    proc = _cxr(["run", "--source", str(src), "--store", f"s3://{s3_bucket}/killed"], s3_stack)
    deadline = time.monotonic() + 120
    while sum(1 for _ in killed_store.list(images)) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    landed = sum(1 for _ in killed_store.list(images))
    assert 100 <= landed < 800, "the kill did not happen mid-shard"
    assert not any(killed_store.list("raw/shards/images_001/archives/"))

    rerun = _cxr(["run", "--source", str(src), "--store", f"s3://{s3_bucket}/killed"], s3_stack)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "already there" in err
    reused = int(err.split(" uploaded, ")[1].split(" already there")[0])
    assert reused >= landed - 8 * 2  # only uploads in flight at the kill are redone

    clean_store = store_for(s3_stack, s3_bucket, "clean")
    ingest(clean_store, str(src))
    killed_then_rerun = raw_zone(killed_store)
    assert killed_then_rerun == raw_zone(clean_store) == expected_raw(layout)
    keys = [info.key for info in killed_store.list("raw/")]
    assert len(keys) == len(set(keys))
    rows = manifest(killed_store, "images_001.zip", file_sha256(src / "images_001.zip"))
    assert sorted(rows["member"]) == sorted(layout["images_001.zip"])


# --- hostile and broken archives ------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb_header() -> bytes:
    """A structurally valid PNG whose header declares 100,000 x 100,000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0"))
        + _png_chunk(b"IEND", b"")
    )


def zip_with_crc_error(members: dict[str, bytes], bad: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    at = raw.find(members[bad]) + len(members[bad]) // 2
    raw[at] ^= 0xFF
    return bytes(raw)


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """One source holding every kind of bad input next to good images."""
    src = tmp_path / "hostile"
    src.mkdir()
    good = dict(sorted(_synth_images(src, 12, seed=11).items()))
    g = iter(good.items())
    names = {
        key: next(g)
        for key in ("slip", "abs", "deep", "trunc", "nonpng", "dup", "crc", "pngcrc", "tar1", "tar2", "x", "y")
    }
    png_crc = bytearray(names["pngcrc"][1])
    png_crc[40] ^= 0xFF  # inside the IHDR/first chunk: the PNG's own CRC no longer matches
    zip_members = {
        f"../../evil/{names['slip'][0]}": names["slip"][1],
        f"/abs/{names['abs'][0]}": names["abs"][1],
        f"a/b/c/d/{names['deep'][0]}": names["deep"][1],
        "images/readme.txt": b"not an image",
        f"images/{names['trunc'][0]}": names["trunc"][1][:-300],
        f"images/{names['nonpng'][0]}": b"GIF89a" + b"\0" * 100,
        f"images/{names['dup'][0]}": names["dup"][1],
        f"other/{names['dup'][0]}": names["dup"][1],
        f"images/{names['pngcrc'][0]}": bytes(png_crc),
        "images/00099999_000.png": png_bomb_header(),
    }
    with zipfile.ZipFile(src / "images_001.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in zip_members.items():
            zf.writestr(name, data)
        zf.writestr("images/00099999_001.png", b"\0" * (65 << 20))  # inflates beyond the 64 MB member limit
        link = zipfile.ZipInfo("images/00099999_002.png")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    crc = {f"images/{names['crc'][0]}": names["crc"][1], f"images/{names['x'][0]}": names["x"][1]}
    (src / "images_002.zip").write_bytes(zip_with_crc_error(crc, f"images/{names['crc'][0]}"))
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tf:
        for name, data in ((names["tar1"][0], names["tar1"][1]), (names["deep"][0], names["deep"][1])):
            info = tarfile.TarInfo(f"images/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        sym = tarfile.TarInfo(f"images/{names['tar2'][0]}")
        sym.type, sym.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tf.addfile(sym)
        info = tarfile.TarInfo(f"images/{names['y'][0]}")
        info.size = len(names["y"][1])
        tf.addfile(info, io.BytesIO(names["y"][1]))
    packed = gzip.compress(tar_buf.getvalue())
    (src / "images_03.tar.gz").write_bytes(packed[: len(packed) - len(names["y"][1]) // 2])  # cut inside the last
    write_archive(src / "images_004.zip", {})
    (src / "images_005.zip").write_text("<html>404 Not Found</html>")
    return src, {key: value[0] for key, value in names.items()}


def _outcomes(store: Store, result: rawzone.ShardResult) -> dict[str, tuple[str, str]]:
    rows = manifest(store, result.shard, result.archive_sha256)
    return {row.member: (row.status, row.reason) for row in rows.itertuples()}


def test_hostile_archives_end_in_their_documented_outcomes(
    corpus: tuple[Path, dict[str, str]], s3_stack: StackInfo, s3_bucket: str
) -> None:
    src, n = corpus
    store = store_for(s3_stack, s3_bucket, "hostile")
    listing = sources.discover(str(src))
    results: dict[str, rawzone.ShardResult] = {}
    for ref in listing.shards:
        if ref.name == "images_005.zip":
            with pytest.raises(BadDataError, match=r"images_005\.zip is not a readable zip archive .*re-download it"):
                extract.extract_shard(store, ref)
            continue
        results[ref.name] = extract.extract_shard(store, ref)

    one = _outcomes(store, results["images_001.zip"])
    assert one[f"../../evil/{n['slip']}"] == ("quarantined", "member path escapes the archive root ('..')")
    assert one[f"/abs/{n['abs']}"] == ("quarantined", "absolute member path")
    assert one[f"a/b/c/d/{n['deep']}"] == ("ok", "")
    assert one["images/readme.txt"] == ("skipped", "name is not NNNNNNNN_NNN.png")
    assert one[f"images/{n['trunc']}"][0] == "quarantined"
    assert "truncated" in one[f"images/{n['trunc']}"][1]
    assert one[f"images/{n['nonpng']}"] == ("quarantined", "not a PNG (bad signature)")
    assert one[f"images/{n['dup']}"] == ("ok", "")
    assert one[f"other/{n['dup']}"] == ("quarantined", "same image name twice in this archive")
    assert "CRC mismatch" in one[f"images/{n['pngcrc']}"][1]
    assert "decompression-bomb limit" in one["images/00099999_000.png"][1]
    assert one["images/00099999_001.png"] == ("quarantined", "member larger than 67108864 bytes")
    assert one["images/00099999_002.png"] == ("quarantined", "symbolic link member")

    two = _outcomes(store, results["images_002.zip"])
    assert "Bad CRC-32" in two[f"images/{n['crc']}"][1]
    assert two[f"images/{n['x']}"] == ("ok", "")

    three = _outcomes(store, results["images_03.tar.gz"])
    assert three[f"images/{n['tar1']}"] == ("ok", "")
    assert three[f"images/{n['tar2']}"] == ("quarantined", "link member (symbolic or hard link)")
    assert three[f"images/{n['y']}"][0] == "quarantined"
    assert "truncated" in three[f"images/{n['y']}"][1]

    assert results["images_004.zip"].images == 0

    # Only sound images landed, each under its own shard's prefix; nothing was written anywhere else.
    landed = {info.key for info in store.list("")}
    images = {re.sub(r"/images/[0-9a-f]{64}/", "/images/", k) for k in landed if "/images/" in k}
    assert images == {
        f"raw/shards/images_001/images/{n['deep']}",
        f"raw/shards/images_001/images/{n['dup']}",
        f"raw/shards/images_002/images/{n['x']}",
        f"raw/shards/images_03/images/{n['tar1']}",
        f"raw/shards/images_03/images/{n['deep']}",
    }
    for key in (k for k in landed if "/images/" in k):  # each key names the sha256 of the bytes it holds
        assert key.split("/")[-2] == hashlib.sha256(store.get_bytes(key)).hexdigest()
    others = {k for k in landed if "/images/" not in k}
    assert {k for k in others if not k.endswith(("manifest.parquet", "_SUCCESS.json", ".json"))} == set()
    assert all(k.split("/")[3] in ("archives", "seen") for k in others)
    assert not any(k.startswith("raw/shards/images_005/") for k in landed)

    # The same image name in two shards: the plan keeps the first and quarantines the second.
    raw = plan.load_raw_images(store, {a: r.archive_sha256 for a, r in results.items()})
    entry = pd.DataFrame({"image_index": sorted(set(raw["image_index"]))})
    quarantine = crosscheck.reconcile(raw, crosscheck.Curated(entry, "Data_Entry_2017.csv")).quarantine
    dup = quarantine[quarantine["reason_code"] == "duplicate_image"]
    assert list(zip(dup["source"], dup["image_index"], strict=True)) == [("images_03.tar.gz", n["deep"])]
