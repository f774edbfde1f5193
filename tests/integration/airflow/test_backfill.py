"""An Airflow 3 backfill over three past nights, created through the REST API (and previewed with the CLI).

Documented semantics (README, "Operations guide"): each backfilled date builds version ``YYYY.MM.DD`` of
that date from the source as it is *now*; a date whose inputs a published release already holds
publishes nothing and reports that release; ``latest`` never moves back to an older version.
So on a store with no release yet, the oldest date publishes and the two later dates report it.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.airflow.components import airflow_command
from pipeline.dev.airflow.installation import LocalAirflow
from pipeline.dev.airflow.rest import ApiClient
from pipeline.dev.ports import free_api_port
from pipeline.dev.stack import StackInfo
from pipeline.dev.waiting import wait_until
from tests.integration.airflow_helpers import new_bucket, synthetic_mirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "nih_cxr_release"
SHARDS = ["1", "2", "3", "4"]  # a subset keeps the three runs short; the param is part of what is tested
TODAY = dt.datetime.now(dt.UTC).date()
DATES = [TODAY - dt.timedelta(days=n) for n in (9, 8, 7)]
VERSIONS = [day.strftime("%Y.%m.%d") for day in DATES]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_mirror(tmp_path_factory, "backfill-mirror", images=48, seed=23)


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    return new_bucket(s3_client, "backfill")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo, bucket: str) -> Iterator[LocalAirflow]:
    extra = {**s3_stack.env(), "CXR_SOURCE": "", "CXR_STORE": f"s3://{bucket}/nightly"}
    with LocalAirflow(tmp_path_factory.mktemp("airflow-backfill"), free_api_port(), extra) as running:
        api = running.client()
        api.wait_for_dag(DAG)
        api.unpause(DAG)  # backfill runs are scheduled only for unpaused DAGs
        yield running


@pytest.fixture(scope="module")
def api(airflow: LocalAirflow) -> ApiClient:
    return airflow.client()


def window() -> dict[str, str]:
    return {"from_date": f"{DATES[0]}T00:00:00Z", "to_date": f"{DATES[-1]}T12:00:00Z"}


@pytest.fixture(scope="module")
def backfill(api: ApiClient, source: Path, bucket: str) -> dict[str, Any]:
    body = {
        "dag_id": DAG,
        **window(),
        "max_active_runs": 1,
        "reprocess_behavior": "none",
        "dag_run_conf": {"source": str(source), "store": f"s3://{bucket}/bf", "shards": SHARDS},
    }
    created = api.backfill(body)  # retried on 503: SQLite answers "database is locked" while the scheduler writes

    def completed() -> dict[str, Any] | None:
        found: dict[str, Any] = api.get(f"/backfills/{created['id']}")
        return found if found.get("completed_at") else None

    return wait_until(completed, 600, "the backfill to complete", interval=3)


@pytest.fixture(scope="module")
def runs(api: ApiClient, backfill: dict[str, Any]) -> list[dict[str, Any]]:
    found = [r for r in api.get(f"/dags/{DAG}/dagRuns?limit=100")["dag_runs"] if r["run_type"] == "backfill"]
    return sorted(found, key=lambda r: r["logical_date"])


def test_cli_dry_run_lists_the_three_nights(airflow: LocalAirflow) -> None:
    window_args = ["--from-date", window()["from_date"], "--to-date", window()["to_date"]]
    cmd = [*airflow_command(), "backfill", "create", "--dag-id", DAG, *window_args, "--dry-run"]
    out = subprocess.run(cmd, env=airflow.env, capture_output=True, text=True, timeout=120, check=True).stdout
    for day in DATES:
        assert f"{day} 02:00:00" in out or f"{day}T02:00:00" in out


def test_backfill_creates_one_run_per_night_with_its_logical_date(runs: list[dict[str, Any]]) -> None:
    assert [r["logical_date"][:19] for r in runs] == [f"{day}T02:00:00" for day in DATES]
    assert [r["state"] for r in runs] == ["success"] * 3
    assert all(r["conf"]["shards"] == SHARDS for r in runs)


def test_oldest_night_publishes_its_dated_version(runs: list[dict[str, Any]], api: ApiClient) -> None:
    first = api.xcom(DAG, runs[0]["dag_run_id"], "publish_release")
    assert first["published"] is True
    assert first["version"] == VERSIONS[0]


def test_later_nights_with_the_same_inputs_publish_nothing_and_report_it(
    runs: list[dict[str, Any]], api: ApiClient, s3_client: Any, bucket: str
) -> None:
    for run in runs[1:]:
        summary = api.xcom(DAG, run["dag_run_id"], "publish_release")
        assert summary == {**summary, "published": False, "version": VERSIONS[0]}
        converted = {
            ti["state"] for ti in api.task_instances(DAG, run["dag_run_id"]) if ti["task_id"] == "convert_unit"
        }
        assert converted == {"skipped"}, "unchanged inputs convert nothing"
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix="bf/releases/", Delimiter="/")
    assert sorted(p["Prefix"] for p in listing.get("CommonPrefixes", [])) == [f"bf/releases/{VERSIONS[0]}/"]


def test_latest_names_the_published_night(runs: list[dict[str, Any]], s3_client: Any, bucket: str) -> None:
    latest = json.loads(s3_client.get_object(Bucket=bucket, Key="bf/releases/latest.json")["Body"].read())
    assert latest["version"] == VERSIONS[0]
    manifest = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"bf/releases/{VERSIONS[0]}/manifest.json")["Body"].read()
    )
    assert manifest["created_by_run"] == runs[0]["dag_run_id"]
