"""The manifest on the real local S3 endpoint: created once with a conditional write, never replaced."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.errors import ReleaseConflictError
from pipeline.publish.manifest import is_published, manifest_key, read_manifest, write_manifest
from pipeline.store.storage import ObjectExistsError, Store

pytestmark = pytest.mark.integration


def test_conditional_create_refuses_an_existing_key(store: Store) -> None:
    store.put_bytes("a.json", b"1", if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put_bytes("a.json", b"2", if_absent=True)
    assert store.get_bytes("a.json") == b"1"


def test_concurrent_manifest_writes_create_exactly_once(store: Store) -> None:
    def write(version_and_fingerprint: tuple[str, str]) -> str:
        version, fingerprint = version_and_fingerprint
        try:
            _sha, created = write_manifest(store, version, {"input_fingerprint": fingerprint})
            return "created" if created else "no-op"
        except ReleaseConflictError:
            return "refused"

    with ThreadPoolExecutor(6) as pool:
        same = list(pool.map(write, [("m", "same")] * 6))
        other = list(pool.map(write, [("n", f"other-{i}") for i in range(6)]))
    assert sorted(same) == ["created"] + ["no-op"] * 5
    assert sorted(other) == ["created"] + ["refused"] * 5


def test_a_version_is_published_only_once_its_manifest_exists(store: Store) -> None:
    store.put_bytes("releases/v1/metadata.parquet", b"rows")  # files of a release being written
    assert not is_published(store, "v1")
    assert read_manifest(store, "v1") is None
    sha, created = write_manifest(store, "v1", {"input_fingerprint": "fp", "version": "v1"})
    assert created
    assert is_published(store, "v1")
    assert read_manifest(store, "v1") == {"input_fingerprint": "fp", "version": "v1"}
    assert manifest_key("v1") == "releases/v1/manifest.json"
    assert write_manifest(store, "v1", {"input_fingerprint": "fp", "version": "v1"}) == (sha, False)


def test_other_content_under_a_published_version_is_refused_and_the_manifest_kept(store: Store) -> None:
    write_manifest(store, "v2", {"input_fingerprint": "one", "created_by_run": "run-a"})
    before = store.get_bytes(manifest_key("v2"))
    with pytest.raises(ReleaseConflictError, match="release v2 was published meanwhile by run run-a with other"):
        write_manifest(store, "v2", {"input_fingerprint": "two", "created_by_run": "run-b"})
    assert store.get_bytes(manifest_key("v2")) == before
