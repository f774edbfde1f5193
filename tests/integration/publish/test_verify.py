"""Verification on the real local S3 endpoint: a tampered, missing or unlisted file is named, against the manifest
(``cxr verify``, every byte re-read) and, at publishing, against the checksums the store holds for what was written."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import ReleaseNotFoundError, VerifyError
from pipeline.publish.latest import LATEST, move_latest
from pipeline.publish.manifest import read_manifest, write_manifest
from pipeline.publish.verify import check_file, sha256_of_object, verify_release, verify_uploads
from pipeline.run import tasks
from pipeline.store.multipart import UPLOAD_CRC32, MultipartWriter
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration
MIB = 1 << 20
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


def _written(store: Store, rel: str, body: bytes, part_size: int | None = None) -> dict[str, Any]:
    """Write ``body`` as one PUT, or as a multipart upload of ``part_size`` parts; return its file entry."""
    if part_size is None:
        return {"path": rel, "size": len(body), "sha256": store.put_bytes(rel, body)}
    with MultipartWriter(store, rel, part_size=part_size, md5=False) as out:
        out.write(body)
    assert out.result is not None
    assert out.result.crc32 is not None
    return {"path": rel, "size": len(body), "sha256": out.result.sha256, UPLOAD_CRC32: out.result.crc32}


def test_written_files_verify_from_the_store_checksums_and_replaced_ones_are_named(store: Store) -> None:
    one, many = os.urandom(70_000), os.urandom(11 * MIB)
    entries = [_written(store, "one.bin", one), _written(store, "many.bin", many, part_size=5 * MIB)]
    assert verify_uploads(store, entries) == []
    _written(store, "one.bin", bytes(reversed(one)))  # same size, other bytes, each way of writing
    _written(store, "many.bin", many[: 5 * MIB] + bytes(reversed(many[5 * MIB :])), part_size=5 * MIB)
    problems = verify_uploads(store, entries)
    assert [p.split(": ", 1)[0] for p in problems] == ["one.bin", "many.bin"]
    assert all("(the object was replaced)" in p for p in problems)


def test_a_file_rewritten_another_way_is_read_back_in_full(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    many = os.urandom(11 * MIB)
    entry = _written(store, "many.bin", many, part_size=5 * MIB)
    store.put_bytes("many.bin", many)  # the same bytes as one PUT: the store holds a SHA-256, not the CRC32 recorded
    with caplog.at_level(logging.WARNING, logger="pipeline.publish.verify"):
        assert verify_uploads(store, [entry]) == []
    assert "reports no ChecksumCRC32 for it (it holds ChecksumSHA256); reading it back in full" in caplog.text
    store.put_bytes("many.bin", bytes(reversed(many)))
    assert verify_uploads(store, [entry]) == ["many.bin: sha256 differs from the manifest"]


def test_a_file_the_store_holds_no_checksum_for_is_read_back_in_full(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"written by a client that sent no checksum"
    store.client.put_object(Bucket=store.bucket, Key=store.key("plain.bin"), Body=body)
    entry = {"path": "plain.bin", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    with caplog.at_level(logging.WARNING, logger="pipeline.publish.verify"):
        assert verify_uploads(store, [entry]) == []
    assert "reports no ChecksumSHA256 for it (it holds no checksum); reading it back in full" in caplog.text
    store.client.put_object(Bucket=store.bucket, Key=store.key("plain.bin"), Body=bytes(reversed(body)))
    assert verify_uploads(store, [entry]) == ["plain.bin: sha256 differs from the manifest"]


def test_publishing_refuses_a_converted_file_replaced_by_other_bytes_of_the_same_size(
    released: dict[str, Any],
) -> None:
    store: Store = released["store"]
    cfg = releases.run_config(store, released["source"], "tampered-run", release="tampered", seed=4)
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    for unit in tasks.plan_release(cfg, shards, tasks.curate_metadata(cfg)):
        tasks.convert_unit(cfg, unit)
    part = next(i.key for i in store.list("releases/tampered/parquet/") if i.key.endswith(".parquet"))
    body = bytearray(store.get_bytes(part))
    body[len(body) // 2] ^= 0xFF  # one byte flipped: the size is the same
    store.put_bytes(part, bytes(body))
    with pytest.raises(VerifyError, match=rf"failed verification, nothing was published: {part}: the store's Checksum"):
        tasks.publish_release(cfg)
    assert not store.exists("releases/tampered/manifest.json")
