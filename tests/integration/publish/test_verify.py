"""Verification against the manifest on the real local S3 endpoint: a tampered, missing or unlisted file is named."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import ReleaseNotFoundError
from pipeline.publish.latest import LATEST, move_latest
from pipeline.publish.manifest import read_manifest, write_manifest
from pipeline.publish.verify import check_file, sha256_of_object, verify_release
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration
FILES = {"metadata.parquet": b"rows without pixels", "webdataset/train/shard-000000.tar": b"t" * 70_000}


def _small_release(store: Store, version: str = "v1") -> str:
    """Publish a release of two files by hand; return its manifest's sha256."""
    entries = []
    for path, body in FILES.items():
        store.put_bytes(f"releases/{version}/{path}", body)
        entries.append({"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    sha, _ = write_manifest(store, version, {"input_fingerprint": "fp", "files": entries})
    move_latest(store, version, sha, "fp")
    return sha


def test_a_sound_release_verifies_with_its_size_and_file_count(store: Store) -> None:
    _small_release(store)
    report = verify_release(store, "latest")
    assert report.ok, report.problems
    assert (report.version, report.files, report.bytes) == ("v1", 2, sum(len(b) for b in FILES.values()))
    body = FILES["webdataset/train/shard-000000.tar"]
    assert sha256_of_object(store, "releases/v1/webdataset/train/shard-000000.tar") == hashlib.sha256(body).hexdigest()


def test_a_tampered_file_of_the_same_size_is_refused(store: Store) -> None:
    _small_release(store)
    tampered = bytearray(FILES["metadata.parquet"])
    tampered[3] ^= 0xFF
    store.put_bytes("releases/v1/metadata.parquet", bytes(tampered))
    report = verify_release(store, "v1")
    assert not report.ok
    assert report.problems == ["releases/v1/metadata.parquet: sha256 differs from the manifest"]


def test_a_missing_a_resized_and_an_unlisted_file_are_each_named(store: Store) -> None:
    _small_release(store)
    store.delete("releases/v1/metadata.parquet")
    store.put_bytes("releases/v1/webdataset/train/shard-000000.tar", b"short")
    store.put_bytes("releases/v1/extra.txt", b"slipped in")
    problems = verify_release(store, "v1").problems
    assert "releases/v1/metadata.parquet: missing" in problems
    assert "releases/v1/webdataset/train/shard-000000.tar: size 5, manifest says 70000" in problems
    assert "extra.txt: not in the manifest" in problems


def test_a_pointer_with_another_manifest_checksum_is_named(store: Store) -> None:
    _small_release(store)
    pointer = json.loads(store.get_bytes(LATEST))
    store.put_bytes(LATEST, json.dumps({**pointer, "manifest_sha256": "0" * 64}).encode())
    assert verify_release(store, "v1").problems == [f"{LATEST}: manifest sha256 differs from releases/v1/manifest.json"]


def test_an_unpublished_version_is_refused_with_where_to_look(store: Store) -> None:
    store.put_bytes("releases/v2/_claim.json", b"{}")
    with pytest.raises(ReleaseNotFoundError, match=r"release v2 is not published in .* `cxr releases list`"):
        verify_release(store, "v2")


def test_check_file_reads_a_real_release_back_clean(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    for entry in manifest["files"][:5]:
        assert check_file(store, {**entry, "path": f"releases/v1/{entry['path']}"}) is None


def test_cxr_verify_passes_with_read_only_credentials(released: dict[str, Any], s3_stack: StackInfo) -> None:
    done = releases.cxr(["verify", "--store", released["uri"], "--release", "latest"], s3_stack.consumer_env())
    assert done.returncode == 0, done.stderr
    assert "release v1:" in done.stdout
    assert "match the manifest" in done.stdout


def test_cxr_verify_names_tampered_missing_and_unlisted_objects(released: dict[str, Any], s3_stack: StackInfo) -> None:
    store: Store = released["store"]
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    part = next(f["path"] for f in manifest["files"] if f["path"].startswith("parquet/split=train/"))
    card = "card/label_prevalence.png"
    originals = {part: store.get_bytes(f"releases/v1/{part}"), card: store.get_bytes(f"releases/v1/{card}")}
    try:
        body = bytearray(originals[part])
        body[len(body) // 2] ^= 0xFF  # same size, one byte flipped
        store.put_bytes(f"releases/v1/{part}", bytes(body))
        store.delete(f"releases/v1/{card}")
        store.put_bytes("releases/v1/extra.txt", b"slipped in")
        done = releases.cxr(["verify", "--store", released["uri"], "--release", "v1"], s3_stack.consumer_env())
        assert done.returncode == 1
        assert "FAILED verification" in done.stdout
        assert f"{part}: sha256 differs from the manifest" in done.stdout
        assert f"{card}: missing" in done.stdout
        assert "extra.txt: not in the manifest" in done.stdout
    finally:
        for path, original in originals.items():
            store.put_bytes(f"releases/v1/{path}", original)
        store.delete("releases/v1/extra.txt")
    assert verify_release(store, "v1").ok
