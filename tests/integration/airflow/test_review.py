"""Review before publish in a real Airflow (api-server, scheduler, dag-processor; LocalExecutor), answered through
the REST API as a reviewer's tools would answer it.

Three runs with the ``review`` param, one after another (the DAG runs one at a time): one approved, one rejected
with a reason, one left unanswered until its review times out (``CXR_REVIEW_HOURS`` is made short for this). While
each waits, the store shows the staged files and nothing a consumer can see; after it, the approved release is
published with the reviewer in its manifest, and the others left nothing behind but their decision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.airflow.installation import LocalAirflow
from pipeline.dev.airflow.rest import ApiClient
from pipeline.dev.airflow.settings import ADMIN_USER
from pipeline.dev.ports import free_api_port
from pipeline.dev.stack import StackInfo
from pipeline.dev.waiting import wait_until
from pipeline.review.decision import TIMED_OUT
from pipeline.store import layout
from tests.integration.airflow_helpers import new_bucket, synthetic_mirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "nih_cxr_release"
REVIEW_TASK = "review_release"
#: 90 s: long enough to answer the two other runs through the API, short enough to wait out in a test.
REVIEW_HOURS = "0.025"
#: Seconds between the review task parking and the answer (see _awaiting).
SETTLE_S = 5


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    return new_bucket(s3_client, "review")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_mirror(tmp_path_factory, "review-mirror", images=24, seed=8)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo, bucket: str) -> Iterator[ApiClient]:
    extra = {
        **s3_stack.env(),
        "CXR_SOURCE": "",
        "CXR_STORE": f"s3://{bucket}/nightly",
        "CXR_REVIEW_HOURS": REVIEW_HOURS,
    }
    with LocalAirflow(tmp_path_factory.mktemp("airflow-review"), free_api_port(), extra) as running:
        client = running.client()
        client.wait_for_dag(DAG)
        client.unpause(DAG)  # its scheduled run fails at once (no source); the triggered ones follow
        yield client


def _keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _trigger(api: ApiClient, source: Path, bucket: str, version: str) -> str:
    conf = {"source": str(source), "store": f"s3://{bucket}/cxr", "release": version, "review": True}
    return api.trigger(DAG, conf)


def _awaiting(api: ApiClient, run_id: str) -> dict[str, Any]:
    """Wait until the run's review task waits for a person; return its human-in-the-loop detail."""

    def waiting() -> dict[str, Any] | None:
        states = {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG, run_id)}
        if states.get("publish_release") in ("failed", "upstream_failed") or states.get("stage_release") == "failed":
            raise AssertionError(f"run {run_id} failed before its review: {states}")
        return states if states.get(REVIEW_TASK) == "awaiting_input" else None

    wait_until(waiting, 400, f"the review task of run {run_id} to wait for input")
    # Airflow 3.3.2 races an answer given within a second of the task parking (the scheduler has not yet taken the
    # executor's report of the parked try, sees the resumed task "changed externally" and retries it, asking
    # again): answer as a person would, a few seconds later (docs/operations.md, Review before publish).
    time.sleep(SETTLE_S)
    assert waiting(), f"run {run_id}: the review task stopped waiting before anyone answered"
    detail: dict[str, Any] = api.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{REVIEW_TASK}/-1/hitlDetails")
    return detail


def _answer(api: ApiClient, run_id: str, option: str, reason: str) -> None:
    path = f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{REVIEW_TASK}/-1/hitlDetails"
    api.patch(path, {"chosen_options": [option], "params_input": {"reason": reason}})


def _nothing_visible(s3_client: Any, bucket: str, version: str) -> None:
    staged = _keys(s3_client, bucket, f"cxr/releases/{version}/")
    assert any(key.endswith(".parquet") for key in staged), "the release is staged while its review waits"
    assert f"cxr/releases/{version}/manifest.json" not in staged
    assert not _keys(s3_client, bucket, f"cxr/{layout.LATEST}")


def _record(s3_client: Any, bucket: str, run_id: str) -> dict[str, Any]:
    body = s3_client.get_object(Bucket=bucket, Key=f"cxr/{layout.review_key(run_id)}")["Body"].read()
    found: dict[str, Any] = json.loads(body)
    return found


def test_an_approved_release_is_published_with_its_reviewer(
    api: ApiClient, source: Path, bucket: str, s3_client: Any
) -> None:
    run_id = _trigger(api, source, bucket, "v1")
    detail = _awaiting(api, run_id)
    assert detail["subject"] == "Publish release v1?"
    assert "**Release v1** is staged by run" in detail["body"]
    assert "| train |" in detail["body"]
    assert detail["options"] == ["Approve", "Reject"]
    assert detail["defaults"] == ["Reject"]
    _nothing_visible(s3_client, bucket, "v1")
    _answer(api, run_id, "Approve", "counts match the card")
    assert api.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key="cxr/releases/v1/manifest.json")["Body"].read())
    review = manifest["provenance"]["review"]
    assert review["decision"] == "approved"
    assert review["by"] == ADMIN_USER
    assert review["comment"] == "counts match the card"
    assert review["via"] == "airflow"
    assert manifest["provenance"]["run_id"] == run_id
    latest = json.loads(s3_client.get_object(Bucket=bucket, Key=f"cxr/{layout.LATEST}")["Body"].read())
    assert latest["version"] == "v1"
    assert api.xcom(DAG, run_id, "publish_release")["published"] is True


def test_a_rejected_release_leaves_only_its_reason(api: ApiClient, source: Path, bucket: str, s3_client: Any) -> None:
    run_id = _trigger(api, source, bucket, "v2")
    _awaiting(api, run_id)
    assert not _keys(s3_client, bucket, "cxr/releases/v2/manifest.json")
    _answer(api, run_id, "Reject", "relabels not signed off yet")
    assert api.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"
    assert _keys(s3_client, bucket, "cxr/releases/v2/") == [], "no staged file and no claim is left"
    assert not _keys(s3_client, bucket, f"cxr/{layout.run_prefix(run_id)}/")
    record = _record(s3_client, bucket, run_id)
    assert (record["decision"], record["by"], record["comment"]) == (
        "rejected",
        ADMIN_USER,
        "relabels not signed off yet",
    )
    summary = api.xcom(DAG, run_id, "publish_release")
    assert summary["published"] is False
    assert summary["review"]["comment"] == "relabels not signed off yet"
    latest = json.loads(s3_client.get_object(Bucket=bucket, Key=f"cxr/{layout.LATEST}")["Body"].read())
    assert latest["version"] == "v1", "a rejected release never moves latest"


def test_a_review_nobody_answers_times_out_as_a_rejection(
    api: ApiClient, source: Path, bucket: str, s3_client: Any
) -> None:
    run_id = _trigger(api, source, bucket, "v3")
    _awaiting(api, run_id)
    assert api.wait_for_run(DAG, run_id, timeout=400)["state"] == "success"
    assert _keys(s3_client, bucket, "cxr/releases/v3/") == []
    record = _record(s3_client, bucket, run_id)
    assert record["decision"] == "rejected"
    assert record["comment"] == TIMED_OUT
    assert record["by"] is None
