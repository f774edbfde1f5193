"""Removing stale run workspaces against a real S3 endpoint: what goes, what stays, and that a rerun does nothing.

S3 sets LastModified itself, so a workspace is made idle by judging it from a ``now`` days in the future.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import UsageError
from pipeline.run import cleanup
from pipeline.store import layout
from pipeline.store.storage import Store

pytestmark = pytest.mark.integration

IDLE = dt.timedelta(hours=48)


def later(days: float = 3) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    cfg = StoreConfig(f"s3://{s3_bucket}/p", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    return Store(cfg)


def put(store: Store, key: str, data: Any) -> None:
    store.put_bytes(key, json.dumps(data).encode())


def workspace(store: Store, run_id: str, version: str = "v1") -> None:
    """A run's workspace as a run that planned ``version`` and finished one unit leaves it."""
    put(store, layout.plan_key(run_id), {"run_id": run_id, "version": version, "fingerprint": "f1"})
    put(store, layout.unit_key(run_id, "u0"), {"unit": "u0"})


def claimed(store: Store, version: str, run_id: str, *, published: bool = False) -> None:
    """``releases/<version>/`` claimed by ``run_id`` with one partial file (and a manifest when ``published``)."""
    put(store, layout.claim_key(version), {"fingerprint": "f1", "run_id": run_id, "claimed_at": "2026-12-01T00:00Z"})
    put(store, layout.release_key(version, "parquet/part-0.parquet"), {"rows": 1})
    if published:
        put(store, layout.manifest_key(version), {"version": version})


def keys(store: Store, prefix: str) -> set[str]:
    return {info.key for info in store.list(prefix)}


def test_a_fresh_workspace_is_kept(store: Store) -> None:
    workspace(store, "manual__2026-12-02T10:00:00+00:00")
    assert cleanup.find_stale(store, idle=IDLE) == []
    listed = cleanup.list_workspaces(store, idle=IDLE)
    assert [(w.run_id, w.stale, w.objects) for w in listed] == [("manual__2026-12-02T10:00:00+00:00", None, 2)]


def test_an_idle_workspace_goes_with_the_unpublished_release_folder_its_run_claimed(store: Store) -> None:
    run_id = "manual__2026-12-02T10:00:00+00:00"
    workspace(store, run_id, "v2")
    claimed(store, "v2", run_id)
    [entry] = cleanup.find_stale(store, idle=IDLE, now=later(3))
    assert (entry.run_id, entry.segment, entry.release, entry.objects, entry.release_objects) == (
        run_id,
        layout.run_segment(run_id),
        "v2",
        2,
        2,
    )
    assert entry.reason in {"idle 3d 0h", "idle 2d 23h"}  # S3 keeps whole seconds
    report = cleanup.remove(store, [entry])
    assert (report.workspaces, report.releases, report.objects) == (1, 1, 4)
    assert keys(store, "runs/") == set()
    assert keys(store, "releases/") == set()
    assert json.loads(json.dumps(report.to_dict()))["removed"] == [f"{layout.run_prefix(run_id)}/", "releases/v2/"]


def test_a_published_release_is_never_touched_even_when_its_claim_names_the_idle_run(store: Store) -> None:
    workspace(store, "r1", "v1")
    claimed(store, "v1", "r1", published=True)
    [entry] = cleanup.find_stale(store, idle=IDLE, now=later())
    assert entry.release is None
    cleanup.remove(store, [entry])
    assert keys(store, "runs/") == set()
    assert keys(store, "releases/") == {
        "releases/v1/_claim.json",
        "releases/v1/manifest.json",
        "releases/v1/parquet/part-0.parquet",
    }


def test_a_release_published_after_the_look_is_left_by_the_removal(store: Store) -> None:
    workspace(store, "r1", "v1")
    claimed(store, "v1", "r1")
    stale = cleanup.find_stale(store, idle=IDLE, now=later())
    put(store, layout.manifest_key("v1"), {"version": "v1"})
    report = cleanup.remove(store, stale)
    assert report.releases == 0
    assert report.skipped == ["releases/v1/: published meanwhile; it stays"]
    assert layout.release_key("v1", "parquet/part-0.parquet") in keys(store, "releases/v1/")


def test_kept_runs_are_never_stale_by_run_id_or_by_segment(store: Store) -> None:
    workspace(store, "manual__2026-12-02T10:00:00+00:00", "v1")
    workspace(store, "r2", "v2")
    claimed(store, "v1", "manual__2026-12-02T10:00:00+00:00")
    assert (
        cleanup.find_stale(store, idle=IDLE, now=later(), keep_runs=["manual__2026-12-02T10:00:00+00:00", "r2"]) == []
    )
    [entry] = cleanup.find_stale(store, idle=IDLE, now=later(), keep_runs=["manual__2026-12-02T10_00_00_00_00"])
    assert entry.run_id == "r2"


def test_a_release_folder_a_kept_run_plans_stays_when_the_idle_run_named_in_its_claim_goes(store: Store) -> None:
    workspace(store, "old", "v1")  # claimed v1, failed
    claimed(store, "v1", "old")
    workspace(store, "resumed", "v1")  # same inputs, shares the claim, in progress
    [entry] = cleanup.find_stale(store, idle=IDLE, now=later(), keep_runs=["resumed"])
    assert (entry.run_id, entry.release) == ("old", None)
    cleanup.remove(store, [entry])
    assert layout.claim_key("v1") in keys(store, "releases/v1/")
    assert keys(store, "runs/") == {layout.plan_key("resumed"), layout.unit_key("resumed", "u0")}


def test_a_rejected_workspace_goes_at_once(store: Store) -> None:
    workspace(store, "r1", "v3")
    claimed(store, "v3", "r1")
    put(store, layout.review_key("r1"), {"decision": "rejected", "by": "alice", "comment": "labels look wrong"})
    workspace(store, "r2", "v4")
    [entry] = cleanup.find_stale(store, idle=IDLE)
    assert (entry.run_id, entry.reason, entry.release) == ("r1", "rejected in review", "v3")
    cleanup.remove(store, [entry])
    assert keys(store, "runs/") == {layout.plan_key("r2"), layout.unit_key("r2", "u0")}
    assert keys(store, "releases/") == set()
    assert store.exists(layout.review_key("r1")), "the review record outlives the run"


def test_an_approved_review_does_not_make_a_workspace_stale(store: Store) -> None:
    workspace(store, "r1")
    put(store, layout.review_key("r1"), {"decision": "approved", "by": "alice"})
    assert cleanup.find_stale(store, idle=IDLE) == []


def test_an_abandoned_claim_goes_once_idle_and_only_while_unpublished(store: Store) -> None:
    claimed(store, "v5", "gone-run")
    claimed(store, "v6", "other-gone-run", published=True)
    assert cleanup.find_stale(store, idle=IDLE) == []
    [entry] = cleanup.find_stale(store, idle=IDLE, now=later())
    assert (entry.reason, entry.release, entry.workspace, entry.prefix) == ("abandoned claim", "v5", False, None)
    report = cleanup.remove(store, [entry])
    assert (report.workspaces, report.releases, report.objects) == (0, 1, 2)
    assert keys(store, "releases/") == {
        "releases/v6/_claim.json",
        "releases/v6/manifest.json",
        "releases/v6/parquet/part-0.parquet",
    }


def test_a_claim_of_another_run_is_not_removed_with_the_idle_workspace(store: Store) -> None:
    workspace(store, "r1", "v1")
    claimed(store, "v1", "r1")
    stale = cleanup.find_stale(store, idle=IDLE, now=later())
    put(store, layout.claim_key("v1"), {"fingerprint": "f1", "run_id": "r9", "claimed_at": "2026-12-02T00:00Z"})
    report = cleanup.remove(store, stale)
    assert (report.workspaces, report.releases) == (1, 0)
    assert report.skipped == ["releases/v1/: its claim no longer names run r1; it stays"]


def test_a_workspace_written_to_after_the_look_stays(store: Store) -> None:
    workspace(store, "r1")
    put(store, layout.review_key("r1"), {"decision": "rejected"})
    stale = cleanup.find_stale(store, idle=IDLE)
    assert stale[0].newest is not None
    seen_before = dataclasses.replace(stale[0], newest=stale[0].newest - dt.timedelta(minutes=5))
    report = cleanup.remove(store, [seen_before])
    assert report.workspaces == 0
    assert keys(store, "runs/r1/") == {layout.plan_key("r1"), layout.unit_key("r1", "u0")}


def test_an_abandoned_claim_written_to_after_the_look_stays(store: Store) -> None:
    claimed(store, "v5", "gone-run")
    [entry] = cleanup.find_stale(store, idle=IDLE, now=later())
    assert entry.newest is not None
    seen_before = dataclasses.replace(entry, newest=entry.newest - dt.timedelta(minutes=5))
    report = cleanup.remove(store, [seen_before])
    assert (report.releases, report.skipped) == (0, ["releases/v5/: written to since it was found abandoned; it stays"])
    assert layout.claim_key("v5") in keys(store, "releases/v5/")


def test_removing_again_is_a_no_op(store: Store) -> None:
    workspace(store, "r1", "v1")
    claimed(store, "v1", "r1")
    stale = cleanup.find_stale(store, idle=IDLE, now=later())
    cleanup.remove(store, stale)
    again = cleanup.remove(store, stale)
    assert again.to_dict() == {"workspaces": 0, "releases": 0, "objects": 0, "bytes": 0, "removed": [], "skipped": []}
    assert cleanup.find_stale(store, idle=IDLE, now=later()) == []


def test_an_idle_time_of_zero_is_refused(store: Store) -> None:
    with pytest.raises(UsageError, match="above 0"):
        cleanup.find_stale(store, idle=dt.timedelta(0))


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(days=3, hours=4, minutes=5), "3d 4h"),
        (dt.timedelta(hours=5, minutes=12), "5h 12m"),
        (dt.timedelta(minutes=42, seconds=30), "42m"),
    ],
)
def test_ages_read_in_days_hours_and_minutes(delta: dt.timedelta, text: str) -> None:
    assert cleanup.age_text(delta) == text
