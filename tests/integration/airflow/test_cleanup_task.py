"""The release DAG's optional clean-up (``CXR_CLEAN_IDLE_HOURS``) in a real ``dag.test()`` run against the real S3:
a leftover workspace of an earlier, abandoned run and the release folder it claimed are gone after the run; the
run publishes as usual; without the setting the DAG has no clean-up task at all."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from tests.integration.airflow_helpers import new_bucket, synthetic_mirror

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[3] / "dags"


@pytest.fixture
def aws_env(s3_stack: StackInfo) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_stack.env().items():
            mp.setenv(key, value)
        yield


def _release_dag(monkeypatch: pytest.MonkeyPatch, hours: str | None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    if hours is None:
        monkeypatch.delenv("CXR_CLEAN_IDLE_HOURS", raising=False)
    else:
        monkeypatch.setenv("CXR_CLEAN_IDLE_HOURS", hours)
    return DagBag(dag_folder=str(DAGS)).dags["nih_cxr_release"]


def _keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_without_the_setting_there_is_no_clean_up_task(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "clean_workspaces" not in _release_dag(monkeypatch, None).task_ids


def test_a_run_removes_the_leftovers_of_an_abandoned_run_and_publishes(
    airflow_db: None,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    s3_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    bucket = new_bucket(s3_client, "cleanup-dag")
    put = s3_client.put_object
    put(Bucket=bucket, Key="cxr/runs/manual__old/plan.json", Body=b'{"run_id": "manual__old", "version": "v0"}')
    put(Bucket=bucket, Key="cxr/runs/manual__old/units/u0.json", Body=b"{}")
    put(Bucket=bucket, Key="cxr/releases/v0/_claim.json", Body=b'{"run_id": "manual__old", "fingerprint": "f"}')
    put(Bucket=bucket, Key="cxr/releases/v0/parquet/part.parquet", Body=b"partial")
    time.sleep(2)  # idle for longer than the 1 s the setting allows below
    dag = _release_dag(monkeypatch, "0.0003")
    assert dag.get_task("clean_workspaces").is_teardown
    source = synthetic_mirror(tmp_path_factory, "cleanup-mirror", images=12, seed=4)
    run = dag.test(run_conf={"source": str(source), "store": f"s3://{bucket}/cxr", "release": "v1"})
    assert str(run.state).endswith("success")
    assert _keys(s3_client, bucket, "cxr/runs/") == []
    assert _keys(s3_client, bucket, "cxr/releases/v0/") == [], "the abandoned run's claimed folder went with it"
    assert "cxr/releases/v1/manifest.json" in _keys(s3_client, bucket, "cxr/releases/v1/")
