"""Downloading a real published release with the consumer's read-only keys: the copy, its checks, resuming, refusals.

One small release is published once for the module; each test downloads it (or parts of it) into its own folder,
in this process or through ``cxr releases download`` as a user would run it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import UsageError, VerifyError
from pipeline.read import download
from pipeline.read.client import Release, ReleaseClient
from pipeline.read.download import DownloadResult, download_release, group_of, local_path, select
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration
URI = "s3://release-downloads/cxr"
VERSION = "2026.12.02"


@pytest.fixture(scope="module")
def published(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = releases.make_source(tmp_path_factory.mktemp("downloads") / "source", images=60, seed=33)
    store = releases.new_store(s3_stack, "release-downloads")
    releases.publish(store, source, "downloads", logical_date="2026-12-02T02:00:00+00:00")
    consumer = ReleaseClient(
        URI,
        endpoint_url=s3_stack.endpoint_url,
        access_key_id=s3_stack.consumer_access_key_id,
        secret_access_key=s3_stack.consumer_secret_access_key,
    )
    return {"store": store, "release": consumer.open("latest")}


@pytest.fixture(scope="module")
def full_copy(published: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The whole release downloaded once, with every progress call recorded."""
    calls: list[tuple[int, int]] = []
    dest = tmp_path_factory.mktemp("full")
    result = download_release(published["release"], dest, progress=lambda done, total: calls.append((done, total)))
    return {"dest": dest, "result": result, "calls": calls}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entries(release: Release) -> list[dict[str, Any]]:
    return list(release.manifest["files"])


def test_a_full_download_holds_every_file_of_the_manifest_with_its_sha256(
    published: dict[str, Any], full_copy: dict[str, Any]
) -> None:
    release: Release = published["release"]
    result: DownloadResult = full_copy["result"]
    root = full_copy["dest"] / VERSION
    assert result.root == root
    for entry in _entries(release):
        assert _sha256(root / entry["path"]) == entry["sha256"], entry["path"]
    assert len(result.files) == result.fetched == len(_entries(release))
    assert (result.kept, result.resumed) == (0, 0)
    assert result.bytes_fetched == result.bytes_total == sum(int(e["size"]) for e in _entries(release))
    assert result.manifest.read_bytes() == published["store"].get_bytes(f"releases/{VERSION}/manifest.json")
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == {e["path"] for e in _entries(release)} | {"manifest.json"}  # no .part left behind
    assert full_copy["calls"][-1] == (result.bytes_total, result.bytes_total)


def test_croissant_reads_the_downloaded_copy(published: dict[str, Any], full_copy: dict[str, Any]) -> None:
    import mlcroissant as mlc

    dataset = mlc.Dataset(jsonld=str(full_copy["dest"] / VERSION / "croissant.json"))
    records = list(dataset.records("metadata"))
    assert len(records) == published["release"].manifest["images"]
    assert {r["metadata/split"].decode() for r in records} == {"train", "val", "test"}


def test_a_rerun_keeps_every_file_and_fetches_nothing(published: dict[str, Any], full_copy: dict[str, Any]) -> None:
    again = download_release(published["release"], full_copy["dest"])
    assert (again.fetched, again.bytes_fetched) == (0, 0)
    assert again.kept == len(_entries(published["release"]))
    assert again.manifest.is_file()


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ("parquet", lambda p: p.startswith("parquet/")),
        ("webdataset", lambda p: p.startswith("webdataset/")),
        (["metadata", "card"], lambda p: p.split("/")[0] in ("annotations", "card", "validation") or "/" not in p),
    ],
)
def test_only_downloads_the_parts_asked_for(
    published: dict[str, Any], tmp_path: Path, only: Any, expected: Any
) -> None:
    release: Release = published["release"]
    result = download_release(release, tmp_path, only=only)
    root = tmp_path / VERSION
    wanted = {e["path"] for e in _entries(release) if expected(e["path"])}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == wanted | {"manifest.json"}
    assert len(result.files) == result.fetched == len(wanted)
    if only == "webdataset":
        assert {f"webdataset/{s}/index.json" for s in ("train", "val", "test")} <= on_disk
        assert any(p.endswith(".tar") for p in on_disk)


def test_metadata_and_card_alone_are_enough_for_croissants_metadata(published: dict[str, Any], tmp_path: Path) -> None:
    import mlcroissant as mlc

    download_release(published["release"], tmp_path, only=["metadata", "card"])
    records = mlc.Dataset(jsonld=str(tmp_path / VERSION / "croissant.json")).records("metadata")
    assert sum(1 for _ in records) == published["release"].manifest["images"]


def test_one_splits_parquet_parts(published: dict[str, Any], tmp_path: Path) -> None:
    result = download_release(published["release"], tmp_path, only="parquet", split="val")
    paths = {p.relative_to(tmp_path / VERSION).as_posix() for p in result.files}
    assert paths
    assert all(p.startswith("parquet/split=val/") for p in paths)


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_an_interrupted_file_resumes_from_its_part(published: dict[str, Any], tmp_path: Path, share: float) -> None:
    release: Release = published["release"]
    entry = next(e for e in _entries(release) if e["path"] == "metadata.parquet")
    body = published["store"].get_bytes(f"releases/{VERSION}/metadata.parquet")
    have = int(len(body) * share)
    part = tmp_path / VERSION / "metadata.parquet.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:have])
    result = download_release(release, tmp_path, only="metadata")
    assert result.resumed == 1
    assert result.bytes_fetched == result.bytes_total - have  # only the missing tail came from the store
    assert _sha256(tmp_path / VERSION / "metadata.parquet") == entry["sha256"]
    assert not part.exists()


def test_a_download_stopped_midway_leaves_parts_and_no_manifest_and_a_rerun_resumes(
    published: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release: Release = published["release"]
    monkeypatch.setattr(download, "CHUNK_BYTES", 4096)

    def stop_halfway(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_release(release, tmp_path, only="parquet", progress=stop_halfway, workers=2)
    root = tmp_path / VERSION
    assert not (root / "manifest.json").exists()
    assert list(root.rglob("*.parquet.part"))
    result = download_release(release, tmp_path, only="parquet")
    assert result.resumed >= 1
    assert result.bytes_fetched < result.bytes_total
    assert not list(root.rglob("*.part"))
    assert all(
        _sha256(path) == entry["sha256"]
        for path, entry in zip(result.files, select(release.manifest, "parquet"), strict=True)
    )


def test_paths_download_only_those_files(published: dict[str, Any], tmp_path: Path) -> None:
    result = download_release(published["release"], tmp_path, paths={"README.md", "metadata.parquet"})
    assert sorted(p.name for p in result.files) == ["README.md", "metadata.parquet"]


def test_a_part_of_other_bytes_and_a_damaged_local_file_are_fetched_again(
    published: dict[str, Any], tmp_path: Path
) -> None:
    release: Release = published["release"]
    root = tmp_path / VERSION
    first = download_release(release, tmp_path, only="metadata")
    meta = root / "metadata.parquet"
    meta.write_bytes(b"\0" * meta.stat().st_size)  # same size, other bytes
    quarantine = root / "quarantine.parquet"
    size = quarantine.stat().st_size
    quarantine.unlink()
    (root / "quarantine.parquet.part").write_bytes(b"x" * (size // 2))
    again = download_release(release, tmp_path, only="metadata")
    assert (again.fetched, again.kept, again.resumed) == (2, first.fetched - 2, 0)
    for entry in _entries(release):
        if group_of(entry["path"]) == "metadata":
            assert _sha256(root / entry["path"]) == entry["sha256"]


def _tamper(store: Store, path: str) -> bytes:
    """Overwrite one object of the release with other bytes of the same size; return the original."""
    key = f"releases/{VERSION}/{path}"
    original = store.get_bytes(key)
    store.put_bytes(key, bytes(b ^ 0xFF for b in original))
    return original


def test_a_tampered_object_is_refused_named_and_no_manifest_is_written(
    published: dict[str, Any], s3_stack: StackInfo, tmp_path: Path
) -> None:
    release: Release = published["release"]
    store: Store = published["store"]
    path = next(e["path"] for e in _entries(release) if e["path"].startswith("parquet/split=train/"))
    original = _tamper(store, path)
    try:
        with pytest.raises(VerifyError, match=rf"{path}.*was not written") as caught:
            download_release(release, tmp_path / "lib", only="parquet")
        assert "cxr verify --release" in str(caught.value)
        root = tmp_path / "lib" / VERSION
        assert not (root / "manifest.json").exists()
        assert not (root / path).exists()
        assert not (root / f"{path}.part").exists()
        others = [e for e in _entries(release) if e["path"].startswith("parquet/") and e["path"] != path]
        assert all(_sha256(root / e["path"]) == e["sha256"] for e in others)  # kept for the rerun
        cli = releases.cxr(["releases", "download", VERSION, str(tmp_path / "cli"), "--store", URI,
                            "--only", "parquet"], s3_stack.consumer_env())  # fmt: skip
        assert cli.returncode == 1, cli.stderr
        assert cli.stderr.strip().splitlines()[-1].startswith("error: release ")
        assert path in cli.stderr
        assert "Traceback" not in cli.stderr
        assert not (tmp_path / "cli" / VERSION / "manifest.json").exists()
    finally:
        store.put_bytes(f"releases/{VERSION}/{path}", original)


def test_cxr_releases_download_writes_the_copy_then_keeps_it(
    published: dict[str, Any], s3_stack: StackInfo, tmp_path: Path
) -> None:
    release: Release = published["release"]
    env = s3_stack.consumer_env()
    args = ["releases", "download", "latest", str(tmp_path), "--store", URI, "--only", "metadata", "--only", "card"]
    wanted = [e for e in _entries(release) if group_of(e["path"]) in ("metadata", "card")]
    first = releases.cxr(args, env)
    assert first.returncode == 0, first.stderr
    assert f"release {VERSION}: {len(wanted)} files" in first.stdout
    assert f"fetched   {len(wanted):>6} files" in first.stdout
    assert (tmp_path / VERSION / "croissant.json").is_file()
    again = releases.cxr([*args, "--json"], env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["fetched"], summary["kept"], summary["bytes_fetched"]) == (0, len(wanted), 0)
    assert summary["manifest"] == str(tmp_path / VERSION / "manifest.json")


def test_cxr_releases_download_refuses_bad_arguments(s3_stack: StackInfo, tmp_path: Path) -> None:
    env = s3_stack.consumer_env()
    bogus = releases.cxr(["releases", "download", VERSION, str(tmp_path), "--store", URI, "--only", "pixels"], env)
    assert bogus.returncode == 2
    assert "invalid choice: 'pixels'" in bogus.stderr
    missing = releases.cxr(["releases", "download", "2020.01.01", str(tmp_path), "--store", URI], env)
    assert missing.returncode == 1
    assert "2020.01.01" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not (tmp_path / "2020.01.01").exists()


def test_only_and_paths_are_checked_before_anything_is_written(published: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"only='pixels': name one or more of parquet, webdataset, metadata, card"):
        download_release(published["release"], tmp_path, only="pixels")
    with pytest.raises(UsageError, match="split 'dev' is not one of train, val, test"):
        select(published["release"].manifest, "parquet", split="dev")
    for path in ("../escape", "/etc/passwd", "a\\b", "a//b"):
        with pytest.raises(VerifyError, match="not a plain relative path"):
            local_path(VERSION, tmp_path, path)
    assert not any(tmp_path.iterdir())
