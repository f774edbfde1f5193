"""Which versions a real store holds: releases apart from half-written versions, ``latest`` resolved, parents."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import InvalidNameError, ReleaseNotFoundError
from pipeline.plan.versions import choose_version
from pipeline.publish.latest import move_latest
from pipeline.publish.listing import list_versions, parent_of, resolve_version
from pipeline.publish.manifest import write_manifest
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration


def _publish(store: Store, version: str) -> None:
    store.put_bytes(f"releases/{version}/metadata.parquet", b"rows")
    write_manifest(store, version, {"input_fingerprint": f"fp-{version}", "version": version})


def test_only_versions_with_a_manifest_are_listed_as_releases_in_name_order(store: Store) -> None:
    for version in ("2026.11.27", "2026.11.26.2", "2026.11.26", "v1"):
        _publish(store, version)
    store.put_bytes("releases/2026.11.28/_claim.json", b"{}")  # claimed, never finished
    store.put_bytes("releases/2026.11.29/parquet/split=train/part-0.parquet", b"half")
    listing = list_versions(store)
    assert listing.published == ["2026.11.26", "2026.11.26.2", "2026.11.27", "v1"]
    assert listing.incomplete == ["2026.11.28", "2026.11.29"]


def test_a_parent_is_the_newest_release_before_it_never_a_half_written_one(store: Store) -> None:
    assert parent_of(store, "2026.11.26") is None
    _publish(store, "2026.11.20")
    store.put_bytes("releases/2026.11.25/_claim.json", b"{}")
    assert parent_of(store, "2026.11.26") == "2026.11.20"
    _publish(store, "2026.11.25")
    assert parent_of(store, "2026.11.26") == "2026.11.25"
    assert parent_of(store, "2026.11.26.2") == "2026.11.25"


def test_latest_resolves_to_what_the_pointer_names_and_bad_names_are_refused(store: Store) -> None:
    with pytest.raises(ReleaseNotFoundError, match=r"nothing is published in s3://.*/releases/ yet \(no latest.json\)"):
        resolve_version(store, "latest")
    _publish(store, "2026.11.26")
    move_latest(store, "2026.11.26", "m", "fp")
    assert resolve_version(store, "latest") == "2026.11.26"
    assert resolve_version(store, "v9") == "v9"  # any valid name passes through; opening it says if it exists
    with pytest.raises(InvalidNameError):
        resolve_version(store, "../runs/x")


def test_releases_list_hides_incomplete_versions_unless_asked(released: dict[str, Any], s3_stack: StackInfo) -> None:
    store: Store = released["store"]
    claimer = releases.run_config(store, released["source"], "claimer", release="pending")
    choose_version(store, claimer, "fp", claim=True)
    env = s3_stack.consumer_env()
    plain = releases.cxr(["releases", "list", "--store", released["uri"]], env)
    assert plain.returncode == 0, plain.stderr
    assert "v1" in plain.stdout
    assert "pending" not in plain.stdout
    flagged = releases.cxr(["releases", "list", "--store", released["uri"], "--incomplete"], env)
    assert "incomplete (claimed or being written, not releases): " in flagged.stdout
    assert "pending" in flagged.stdout.split("incomplete")[-1]
    shown = releases.cxr(["releases", "show", "pending", "--store", released["uri"]], env)
    assert shown.returncode == 1
    assert "error: release pending is not published" in shown.stderr
