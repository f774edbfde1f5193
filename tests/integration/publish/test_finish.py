"""Finishing a real release through every stage: complete with the manifest last, republished as a no-op,
refused for other content, raced by two publishers, and refused (then repaired) when a file is damaged."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pipeline.config import RunConfig
from pipeline.errors import ReleaseConflictError, VerifyError
from pipeline.publish.latest import LATEST, read_latest
from pipeline.publish.listing import list_versions
from pipeline.publish.manifest import read_manifest
from pipeline.publish.verify import verify_release
from pipeline.run import tasks
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration


def test_publish_writes_a_complete_release_with_manifest_last(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    assert released["summary"]["published"] is True
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    listed = {f["path"] for f in manifest["files"]}
    for name in ("README.md", "croissant.json", "metadata.parquet", "quarantine.parquet", "card/age_histogram.png"):
        assert name in listed
    assert any(p.startswith("parquet/split=train/") for p in listed)
    assert any(p.startswith("webdataset/test/") and p.endswith(".tar") for p in listed)
    assert any(p.startswith("validation/") for p in listed)
    assert sum(manifest["counts"].values()) == 60
    assert all(f["samples"] == f["rows"] for f in manifest["files"] if f["kind"] == "wds")
    assert {"parent", "validation", "patients", "sources", "config", "schema", "labels"} <= manifest.keys()
    assert not store.exists("releases/v1/_claim.json")
    latest = read_latest(store)
    assert latest is not None
    assert latest["version"] == "v1"
    assert latest["manifest_sha256"] == hashlib.sha256(store.get_bytes("releases/v1/manifest.json")).hexdigest()


def test_republishing_the_same_content_is_a_no_op(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    manifest_before = store.get_bytes("releases/v1/manifest.json")
    latest_before = store.get_bytes(LATEST)
    again = releases.publish(store, released["source"], "again", release="v1")
    assert again["published"] is False
    assert again["version"] == "v1"
    assert store.get_bytes("releases/v1/manifest.json") == manifest_before
    assert store.get_bytes(LATEST) == latest_before
    assert not list(store.list("runs/again/"))


def test_publishing_other_content_under_a_published_version_is_refused(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    manifest_before = store.get_bytes("releases/v1/manifest.json")
    with pytest.raises(ReleaseConflictError, match="release v1 already exists"):
        releases.publish(store, released["source"], "other-seed", release="v1", seed=9)
    assert store.get_bytes("releases/v1/manifest.json") == manifest_before
    assert verify_release(store, "v1").ok


def _race(cfg: RunConfig, shards: list[dict[str, Any]], curated: dict[str, Any]) -> str:
    """Plan (claim), convert and publish one run; return ``published``, ``no-op`` or the refusal."""
    try:
        for unit in tasks.plan_release(cfg, shards, curated):
            tasks.convert_unit(cfg, unit)
        return "published" if tasks.publish_release(cfg)["published"] else "no-op"
    except ReleaseConflictError as exc:
        return str(exc)


def test_two_publishers_racing_for_one_version_have_exactly_one_winner(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    cfgs = [
        releases.run_config(store, released["source"], f"racer-{seed}", release="race", seed=seed) for seed in (1, 2)
    ]
    prepared = []
    for cfg in cfgs:  # extract and curate first, so that the two runs race through claim, convert and publish
        shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
        prepared.append((cfg, shards, tasks.curate_metadata(cfg)))
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda args: _race(*args), prepared))
    assert outcomes.count("published") == 1, outcomes
    refusal = next(o for o in outcomes if o != "published")
    assert "release race already exists (or is being published) with different content" in refusal
    assert verify_release(store, "race").ok
    winner = outcomes.index("published") + 1
    assert read_manifest(store, "race")["config"]["seed"] == winner  # type: ignore[index]


def test_a_publish_that_fails_verification_leaves_latest_alone_and_a_rerun_repairs_it(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    cfg = releases.run_config(store, released["source"], "broken-run", release="broken", seed=3)
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    for unit in tasks.plan_release(cfg, shards, tasks.curate_metadata(cfg)):
        tasks.convert_unit(cfg, unit)
    latest_before = store.get_bytes(LATEST)
    shard = next(i.key for i in store.list("releases/broken/webdataset/") if i.key.endswith(".tar"))
    store.put_bytes(shard, b"not the shard that was converted")
    with pytest.raises(VerifyError, match=r"release broken failed verification, nothing was published: .*\.tar"):
        tasks.publish_release(cfg)
    assert store.get_bytes(LATEST) == latest_before
    assert not store.exists("releases/broken/manifest.json")
    listing = list_versions(store)
    assert "broken" in listing.incomplete
    assert "broken" not in listing.published
    rerun = tasks.run_all(cfg)  # the same run again: the damaged unit is converted again, then published
    assert rerun["published"] is True
    assert verify_release(store, "broken").ok
