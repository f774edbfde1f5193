"""Store keys: each is the path the README and docs/ingest.md document, none has an empty segment ('//')."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.config import STORE_LAYOUT_DIRS
from pipeline.errors import UsageError
from pipeline.store import layout

SHA = "ab" * 32
SHARD = layout.shard_prefix("images_001")
ARCHIVE = layout.archive_prefix("images_001", SHA)

DOCUMENTED: list[tuple[str, str]] = [
    (layout.LATEST, "releases/latest.json"),
    (layout.releases_root(), "releases/"),
    (layout.release_prefix("2026.11.26"), "releases/2026.11.26"),
    (layout.manifest_key("2026.11.26"), "releases/2026.11.26/manifest.json"),
    (layout.claim_key("2026.11.26"), "releases/2026.11.26/_claim.json"),
    (
        layout.release_key("v1", "parquet/split=train/train-00.parquet"),
        "releases/v1/parquet/split=train/train-00.parquet",
    ),
    (layout.run_prefix("manual-1"), "runs/manual-1"),
    (layout.plan_key("manual-1"), "runs/manual-1/plan.json"),
    (layout.plan_table_key("manual-1"), "runs/manual-1/plan.parquet"),
    (layout.quarantine_key("manual-1"), "runs/manual-1/quarantine.parquet"),
    (layout.run_key("manual-1", "data_entry.parquet"), "runs/manual-1/data_entry.parquet"),
    (layout.validation_key("manual-1", "results.json"), "runs/manual-1/validation/results.json"),
    (layout.unit_key("manual-1", "train-0003"), "runs/manual-1/units/train-0003.json"),
    (SHARD, "raw/shards/images_001"),
    (layout.images_prefix("images_001"), "raw/shards/images_001/images/"),
    (layout.raw_image_key(SHARD, SHA, "00000001_000.png"), f"raw/shards/images_001/images/{SHA}/00000001_000.png"),
    (layout.archives_prefix("images_001"), "raw/shards/images_001/archives/"),
    (ARCHIVE, f"raw/shards/images_001/archives/{SHA}"),
    (layout.archive_manifest_key(ARCHIVE), f"raw/shards/images_001/archives/{SHA}/manifest.parquet"),
    (layout.archive_marker_key(ARCHIVE), f"raw/shards/images_001/archives/{SHA}/_SUCCESS.json"),
    (layout.seen_key("images_001", "f00d"), "raw/shards/images_001/seen/f00d.json"),
    (layout.source_manifest_key("manual-1"), "raw/runs/manual-1/source_manifest.json"),
]


@pytest.mark.parametrize(("key", "documented"), DOCUMENTED, ids=[d for _, d in DOCUMENTED])
def test_each_key_is_the_documented_path(key: str, documented: str) -> None:
    assert key == documented


def test_every_key_lies_in_a_folder_a_store_prefix_may_not_enter() -> None:
    """The prefix rule of config (no store inside releases/, raw/ or runs/) protects exactly these folders."""
    assert {key.split("/", 1)[0] for key, _ in DOCUMENTED} == set(STORE_LAYOUT_DIRS)


HOSTILE_RUN_IDS = ["scheduled__2026-11-26T00:00:00+00:00", "a//b", "/lead", "trail/", "x y\tz", "ü-run", "__a__"]


@pytest.mark.parametrize("run_id", HOSTILE_RUN_IDS)
@pytest.mark.parametrize(
    "key",
    [
        layout.run_prefix,
        layout.plan_key,
        layout.plan_table_key,
        layout.quarantine_key,
        layout.source_manifest_key,
        lambda run: layout.unit_key(run, "val-0000"),
        lambda run: layout.validation_key(run, "data_docs/index.html"),
    ],
)
def test_run_keys_never_hold_an_empty_segment(run_id: str, key: Callable[[str], str]) -> None:
    """SeaweedFS folds '//' to '/': a key with one would be written under one name and listed under another."""
    made = key(run_id)
    assert "//" not in made
    assert not made.startswith("/")
    assert not made.endswith("/")
    segment = layout.run_segment(run_id)
    assert made.split("/")[1 if made.startswith("runs/") else 2] == segment


def test_an_airflow_run_id_becomes_one_key_safe_segment() -> None:
    assert layout.run_prefix("scheduled__2026-11-26T00:00:00+00:00") == "runs/scheduled__2026-11-26T00_00_00_00_00"
    assert layout.run_segment("a//b") == "a_b"


@pytest.mark.parametrize(
    "make",
    [
        lambda: layout.run_prefix("///"),  # nothing key-safe left: would be runs/ itself, every run's workspace
        lambda: layout.run_prefix(".."),
        lambda: layout.release_prefix(""),
        lambda: layout.release_prefix("a/b"),
        lambda: layout.claim_key(".."),
        lambda: layout.shard_prefix(""),
        lambda: layout.archive_prefix("images_001", ""),
        lambda: layout.raw_image_key(SHARD, SHA, ""),
        lambda: layout.seen_key("images_001", "../x"),
        lambda: layout.unit_key("run", "a/b"),
    ],
)
def test_a_name_that_would_change_the_layout_is_refused(make: Callable[[], str]) -> None:
    """A key for the wrong folder (``runs/`` itself, a parent, a sub-folder) would delete or overwrite others' files."""
    with pytest.raises(UsageError, match="cannot name a store key"):
        make()


def test_the_manifest_and_the_claim_are_the_files_a_manifest_does_not_list() -> None:
    assert {"manifest.json", "_claim.json"} == layout.UNLISTED
    assert layout.manifest_key("v1").rsplit("/", 1)[1] in layout.UNLISTED
    assert layout.claim_key("v1").rsplit("/", 1)[1] in layout.UNLISTED
