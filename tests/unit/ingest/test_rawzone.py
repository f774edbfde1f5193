"""The raw zone's records on a real store: content keys, markers, the seen index and the run's source manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.ingest import files, rawzone, remote, sources
from pipeline.store.storage import Store

SHA = "ab" * 32


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    return Store(s3_stack.store_config(f"s3://{s3_bucket}/cxr"))


def _ref(tmp_path: Path, name: str = "images_001.zip", data: bytes = b"zip") -> files.FileRef:
    path = tmp_path / name
    path.write_bytes(data)
    return files.local_ref(path)


def test_keys_name_the_shard_the_archive_content_and_the_image_bytes() -> None:
    digest = hashlib.sha256(b"png").digest()
    assert rawzone.shard_prefix("images_01.tar.gz") == "raw/shards/images_01"
    assert rawzone.archive_prefix("images_001.zip", SHA) == f"raw/shards/images_001/archives/{SHA}"
    assert (
        rawzone.raw_image_key("raw/shards/images_001", "00000001_000.png", digest)
        == f"raw/shards/images_001/images/{digest.hex()}/00000001_000.png"
    )


def test_a_remote_file_without_a_fingerprint_is_never_remembered(tmp_path: Path) -> None:
    bare = files.remote_ref(remote.RemoteInfo("images_001.zip", "http://mirror/images_001.zip", 3, ""))
    assert rawzone.seen_key(bare) is None
    key = rawzone.seen_key(_ref(tmp_path))
    assert key is not None
    assert key.startswith("raw/shards/images_001/seen/")


def test_a_folders_identity_covers_the_entries_it_could_not_read() -> None:
    plain = rawzone.folder_sha256("d" * 64, [])
    assert rawzone.folder_sha256("d" * 64, []) == plain
    with_link = rawzone.folder_sha256("d" * 64, [("images/x.png", "symbolic link member")])
    assert with_link != plain
    assert rawzone.folder_sha256("d" * 64, [("images/x.png", "member larger than 10 bytes")]) != with_link


def test_an_archive_counts_as_extracted_once_its_marker_and_manifest_are_written(store: Store, tmp_path: Path) -> None:
    ref = _ref(tmp_path)
    prefix = rawzone.archive_prefix(ref.name, SHA)
    result = rawzone.ShardResult(ref.name, prefix, 1, 0, SHA, False, 1, "m" * 32, True)
    assert rawzone.completed(store, SHA, ref.name) is None
    assert rawzone.extracted_versions(store, ref.name) == set()
    row = {"image_index": "00000001_000.png", "shard": ref.name, "member": "00000001_000.png", "status": "ok"}
    rawzone.write_records(store, ref, result, [row])
    done = rawzone.completed(store, SHA, ref.name)
    assert done is not None
    assert (done["images"], done["archive_sha256"], done["layout"], done["size"]) == (1, SHA, rawzone.LAYOUT, 3)
    assert rawzone.extracted_versions(store, ref.name) == {SHA}
    assert rawzone.known(store, ref) is None  # this location and fingerprint were never seen
    rawzone.remember(store, ref, SHA)
    assert rawzone.known(store, ref) == done
    (tmp_path / ref.name).write_bytes(b"other")  # a new fingerprint: not known until extracted
    assert rawzone.known(store, files.refreshed(ref)) is None


def test_a_marker_of_another_layout_version_does_not_count(store: Store, tmp_path: Path) -> None:
    ref = _ref(tmp_path)
    prefix = rawzone.archive_prefix(ref.name, SHA)
    rawzone.write_records(store, ref, rawzone.ShardResult(ref.name, prefix, 0, 0, SHA, False), [])
    marker = json.loads(store.get_bytes(f"{prefix}/_SUCCESS.json"))
    store.put_bytes(f"{prefix}/_SUCCESS.json", json.dumps({**marker, "layout": rawzone.LAYOUT - 1}).encode())
    assert rawzone.completed(store, SHA, ref.name) is None  # extracted by an older version: extract it again


def test_the_source_manifest_lists_every_file_with_its_hashes(store: Store, tmp_path: Path) -> None:
    (tmp_path / "images_001.zip").write_bytes(b"zip")
    (tmp_path / "Data_Entry_2017.csv").write_bytes(b"Image Index\n")
    listing = sources.discover(str(tmp_path))
    uri = rawzone.record_sources(store, listing, "manual run 1")
    assert uri == store.uri("raw/runs/manual_run_1/source_manifest.json")
    manifest = json.loads(store.get_bytes("raw/runs/manual_run_1/source_manifest.json"))
    by_name = {entry["name"]: entry for entry in manifest["files"]}
    assert by_name["images_001.zip"]["kind"] == "archive"
    assert by_name["images_001.zip"]["sha256"] is None  # not extracted yet: extract_shard records it
    assert by_name["Data_Entry_2017.csv"]["sha256"] == hashlib.sha256(b"Image Index\n").hexdigest()
    assert by_name["Data_Entry_2017.csv"]["md5_actual"] == hashlib.md5(b"Image Index\n").hexdigest()
