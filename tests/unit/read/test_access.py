"""Random access on a release laid out on local disk: which row group ``get`` reads, the scan fallback, refusals."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pipeline.errors import UsageError, VerifyError
from pipeline.read.access import locate
from pipeline.read.client import Release, ReleaseClient

VERSION = "2026.11.26"
ROOT = f"bkt/cxr/releases/{VERSION}"  # what the client's s3:// URLs become as filesystem paths
GROUP_ROWS = 3


class _CountingReader:
    """A file object over a pyarrow file that adds every byte read to its filesystem's count."""

    def __init__(self, inner: Any, owner: CountingFS) -> None:
        self.inner, self.owner, self.closed = inner, owner, False

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.inner.read() if n is None or n < 0 else self.inner.read(n)
        with self.owner.lock:
            self.owner.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self.inner.tell())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class CountingFS(pafs.FileSystemHandler):
    """A read-only pyarrow filesystem handler over another filesystem that counts files opened and bytes read."""

    def __init__(self, inner: pafs.FileSystem) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.opened: list[str] = []
        self.bytes_read = 0

    def reset(self) -> None:
        self.opened, self.bytes_read = [], 0

    def filesystem(self) -> pafs.PyFileSystem:
        return pafs.PyFileSystem(self)

    def get_type_name(self) -> str:
        return "counting"

    def normalize_path(self, path: str) -> str:
        return path

    def equals(self, other: Any) -> bool:
        return other is self

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return list(self.inner.get_file_info(paths))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return list(self.inner.get_file_info(selector))

    def open_input_file(self, path: str) -> pa.PythonFile:
        with self.lock:
            self.opened.append(path)
        return pa.PythonFile(_CountingReader(self.inner.open_input_file(path), self), mode="r")

    def open_input_stream(self, path: str) -> pa.PythonFile:
        return self.open_input_file(path)

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError("read-only filesystem")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def _client() -> ReleaseClient:
    return ReleaseClient("s3://bkt/cxr", endpoint_url="http://127.0.0.1:9", access_key_id="A", secret_access_key="S")


def _rows(split: str, patients: range) -> list[dict[str, Any]]:
    return [
        {"image_id": f"{p:08d}_{f:03d}", "split": split, "patient_id": p, "follow_up": f,
         "image": f"full {p} {f}".encode(), "image_small": f"small {p} {f}".encode()}
        for p in patients for f in range(2)
    ]  # fmt: skip


def _write_release(tmp: Path) -> dict[str, Any]:
    """metadata.parquet and two train parts of 3-row groups under ``tmp/bkt/cxr/releases/<v>/``; the manifest."""
    base = tmp / ROOT
    (base / "parquet/split=train").mkdir(parents=True)
    files: list[dict[str, Any]] = []
    everything: list[dict[str, Any]] = []
    for part, patients in enumerate((range(1, 5), range(5, 9))):
        rows = _rows("train", patients)
        everything += rows
        path = f"parquet/split=train/train-000000-{part:02d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), base / path, row_group_size=GROUP_ROWS)
        groups = [rows[i : i + GROUP_ROWS] for i in range(0, len(rows), GROUP_ROWS)]
        row_groups = [{"rows": len(g), "first": g[0]["image_id"], "last": g[-1]["image_id"]} for g in groups]
        files.append(
            {"path": path, "kind": "parquet", "rows": len(rows), "size": 1, "sha256": "0", "row_groups": row_groups}
        )
    metadata = pa.Table.from_pylist(
        [{k: v for k, v in r.items() if not k.startswith("image")} | {"image_id": r["image_id"]} for r in everything]
    )
    pq.write_table(metadata, base / "metadata.parquet")
    files.append({"path": "metadata.parquet", "kind": "parquet", "rows": len(everything), "size": 1, "sha256": "0"})
    return {"files": files, "counts": {"train": len(everything), "val": 0, "test": 0}}  # fmt: skip


@pytest.fixture
def local(tmp_path: Path) -> dict[str, Any]:
    manifest = _write_release(tmp_path)
    counting = CountingFS(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()))
    return {"manifest": manifest, "fs": counting}


def _open(local: dict[str, Any], manifest: dict[str, Any] | None = None) -> Release:
    release = Release(_client(), VERSION, manifest or local["manifest"])
    release.cache["filesystem"] = local["fs"].filesystem()
    return release


def test_locate_finds_the_file_and_row_group_by_their_first_and_last_ids(local: dict[str, Any]) -> None:
    entries = [f for f in local["manifest"]["files"] if f["path"].startswith("parquet/")]
    entry, group = locate(entries, "00000006_000") or ({}, -1)
    assert (entry["path"], group) == ("parquet/split=train/train-000000-01.parquet", 0)
    assert locate(entries, "00000008_001") == (entries[1], 2)
    assert locate(entries, "00000009_000") is None
    assert locate([{k: v for k, v in e.items() if k != "row_groups"} for e in entries], "00000006_000") is None


def test_get_reads_one_row_group_of_one_file_and_returns_the_row_with_both_images(local: dict[str, Any]) -> None:
    release = _open(local)
    release.metadata()
    local["fs"].reset()
    row = release.get("00000007_001")
    assert row["image"] == b"full 7 1"
    assert row["image_small"] == b"small 7 1"
    assert (row["patient_id"], row["follow_up"], row["split"]) == (7, 1, "train")
    assert local["fs"].opened == [f"{ROOT}/parquet/split=train/train-000000-01.parquet"]
    local["fs"].reset()
    assert release.get("00000002_000.png")["image"] == b"full 2 0", "an image_index (with .png) is taken too"


def test_a_release_without_row_groups_is_read_with_a_filter_on_image_id(local: dict[str, Any]) -> None:
    manifest = dict(local["manifest"])
    manifest["files"] = [{k: v for k, v in f.items() if k != "row_groups"} for f in manifest["files"]]
    row = _open(local, manifest).get("00000003_001")
    assert (row["image"], row["image_small"]) == (b"full 3 1", b"small 3 1")


def test_an_unknown_image_is_a_usage_error_naming_it_and_the_release(local: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=rf"release {VERSION} has no image '00000099_000': image ids look like"):
        _open(local).get("00000099_000")
    with pytest.raises(UsageError, match=r"an image id is a string"):
        _open(local).get(7)  # type: ignore[arg-type]


def test_a_manifest_whose_ranges_miss_a_listed_image_is_a_verify_error(local: dict[str, Any]) -> None:
    manifest = dict(local["manifest"])
    manifest["files"] = [
        {**f, "row_groups": [{"rows": 1, "first": "x", "last": "x"}]} if "row_groups" in f else f
        for f in manifest["files"]
    ]
    message = r"lists image 00000002_001 in its metadata \(train\) but no row group .*`cxr verify --release 2026.11.26`"
    with pytest.raises(VerifyError, match=message):
        _open(local, manifest).get("00000002_001")
