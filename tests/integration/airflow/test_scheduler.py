"""A real Airflow (api-server, scheduler, dag-processor; LocalExecutor on SQLite) runs the release DAG.

Everything goes through the REST API v2 like an operator's script would: unpause, trigger with
params, wait, read XCom. The store's endpoint and keys reach the tasks only through the Airflow
connection ``cxr_store`` (the ``AWS_*`` variables are blanked for the Airflow processes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.airflow.installation import LocalAirflow
from pipeline.dev.airflow.rest import ApiClient
from pipeline.dev.ports import free_api_port
from pipeline.dev.stack import StackInfo
from pipeline.dev.waiting import wait_until
from tests.integration.airflow_helpers import new_bucket, synthetic_mirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "nih_cxr_release"
CONSUMER = "nih_cxr_consumer"
IMAGES = 48


def connection_env(stack: StackInfo) -> dict[str, str]:
    """The store as the Airflow connection ``cxr_store`` (AWS type), and no ``AWS_*`` keys at all."""
    conn = {
        "conn_type": "aws",
        "login": stack.access_key_id,
        "password": stack.secret_access_key,
        "extra": {"endpoint_url": stack.endpoint_url, "region_name": stack.region},
    }
    blank = dict.fromkeys(("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "")
    return {"AIRFLOW_CONN_CXR_STORE": json.dumps(conn), **blank}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_mirror(tmp_path_factory, "sched-mirror", images=IMAGES, seed=11)


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    return new_bucket(s3_client, "sched")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo, bucket: str) -> Iterator[LocalAirflow]:
    """One Airflow for the module; scheduled runs get no source (CXR_SOURCE empty) and fail at once."""
    extra = {**connection_env(s3_stack), "CXR_SOURCE": "", "CXR_STORE": f"s3://{bucket}/nightly"}
    with LocalAirflow(tmp_path_factory.mktemp("airflow-sched"), free_api_port(), extra) as running:
        client = running.client()
        client.wait_for_dag(DAG)
        client.wait_for_dag(CONSUMER)
        client.unpause(CONSUMER)
        client.unpause(DAG)  # a cron DAG: this also creates the scheduled run of the latest night
        yield running


@pytest.fixture(scope="module")
def api(airflow: LocalAirflow) -> ApiClient:
    return airflow.client()


def read_json(s3_client: Any, bucket: str, key: str) -> Any:
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    found = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return [obj["Key"] for obj in found]


def summaries(airflow: LocalAirflow) -> str:
    """What the DAG's callbacks logged (they run in the dag-processor)."""
    files = (airflow.home / "logs" / "dag_processor").rglob(f"{DAG}.py.log")
    return "\n".join(path.read_text(errors="replace") for path in files)


def states(api: ApiClient, run_id: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for ti in api.task_instances(DAG, run_id):
        found.setdefault(ti["task_id"], set()).add(str(ti["state"]))
    return found


@pytest.fixture(scope="module")
def scheduled_run(api: ApiClient) -> dict[str, Any]:
    def scheduled() -> dict[str, Any] | None:
        runs = api.get(f"/dags/{DAG}/dagRuns")["dag_runs"]
        return next((r for r in runs if r["run_type"] == "scheduled"), None)

    run = wait_until(scheduled, 90, "the scheduled run created by unpausing")
    return api.wait_for_run(DAG, run["dag_run_id"], timeout=180)


@pytest.fixture(scope="module")
def api_run(api: ApiClient, scheduled_run: dict[str, Any], source: Path, bucket: str) -> dict[str, Any]:
    conf = {"source": str(source), "store": f"s3://{bucket}/api", "split_mode": "patient-hash", "seed": 7}
    run_id = api.trigger(DAG, conf)
    return api.wait_for_run(DAG, run_id, timeout=420)


def test_unpausing_runs_the_latest_night_which_fails_at_once_on_bad_params(
    scheduled_run: dict[str, Any], api: ApiClient, airflow: LocalAirflow
) -> None:
    assert scheduled_run["state"] == "failed"
    assert scheduled_run["logical_date"].endswith("T02:00:00Z")
    discover = next(ti for ti in api.task_instances(DAG, scheduled_run["dag_run_id"]) if ti["task_id"] == "discover")
    assert discover["state"] == "failed"
    assert discover["try_number"] == 1, "bad parameters must not be retried"

    def logged() -> str | None:
        text = summaries(airflow)
        return text if f"run {scheduled_run['dag_run_id']} failed at task discover" in text else None

    summary = wait_until(logged, 60, "the failure callback's summary")
    assert "no source given" in summary


def test_run_triggered_through_the_api_with_params_publishes_a_release(
    api_run: dict[str, Any], api: ApiClient, s3_client: Any, bucket: str
) -> None:
    assert api_run["state"] == "success"
    summary = api.xcom(DAG, api_run["dag_run_id"], "publish_release")
    version = api_run["run_after"][:10].replace("-", ".")
    assert summary["published"] is True
    assert summary["version"] == version
    manifest = read_json(s3_client, bucket, f"api/releases/{version}/manifest.json")
    assert sum(manifest["counts"].values()) + manifest["quarantined"] == IMAGES
    assert manifest["config"]["split_mode"] == "patient-hash"
    assert manifest["config"]["seed"] == 7
    assert read_json(s3_client, bucket, "api/releases/latest.json")["version"] == version
    extracted = [ti for ti in api.task_instances(DAG, api_run["dag_run_id"]) if ti["task_id"] == "extract_shard"]
    assert len(extracted) == 12
    assert {ti["state"] for ti in extracted} == {"success"}


def test_the_success_callback_logs_the_version_and_counts(api_run: dict[str, Any], airflow: LocalAirflow) -> None:
    def logged() -> str | None:
        text = summaries(airflow)
        return text if f"run {api_run['dag_run_id']} succeeded: published release" in text else None

    line = next(
        line for line in wait_until(logged, 60, "the success summary").splitlines() if api_run["dag_run_id"] in line
    )
    assert "quarantined" in line
    assert "manifest.json" in line


def test_the_consumer_dag_runs_on_the_release_asset(api_run: dict[str, Any], api: ApiClient, bucket: str) -> None:
    def consumer_done() -> dict[str, Any] | None:
        runs = api.get(f"/dags/{CONSUMER}/dagRuns")["dag_runs"]
        return next((r for r in runs if r["state"] in ("success", "failed")), None)

    run = wait_until(consumer_done, 120, "the consumer DAG's run")
    assert run["state"] == "success"
    assert run["run_type"] == "asset_triggered"
    version = api.xcom(DAG, api_run["dag_run_id"], "publish_release")["version"]
    lines = api.xcom(CONSUMER, run["dag_run_id"], "log_release")
    assert len(lines) == 1
    assert f"release {version} is ready at s3://{bucket}/api/releases/{version}/manifest.json" in lines[0]


def test_no_credential_in_logs_xcom_or_manifest(
    api_run: dict[str, Any], api: ApiClient, airflow: LocalAirflow, s3_stack: StackInfo, s3_client: Any, bucket: str
) -> None:
    secret, key_id = s3_stack.secret_access_key, s3_stack.access_key_id
    for path in airflow.home.rglob("*.log"):
        text = path.read_text(errors="replace")
        assert secret not in text, f"secret key in {path}"
        assert key_id not in text, f"access key id in {path}"
    run_id = api_run["dag_run_id"]
    entries = api.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/~/xcomEntries?limit=1000")["xcom_entries"]
    assert entries
    for entry in entries:
        value = api.get(
            f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{entry['task_id']}/xcomEntries/{entry['key']}"
            f"?map_index={entry['map_index']}&deserialize=true"
        )["value"]
        assert secret not in json.dumps(value)
        assert key_id not in json.dumps(value)
    version = api.xcom(DAG, run_id, "publish_release")["version"]
    for key in (f"api/releases/{version}/manifest.json", "api/releases/latest.json"):
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        assert secret not in body
        assert key_id not in body


def test_dry_run_reports_the_version_it_would_publish_and_publishes_nothing(
    api_run: dict[str, Any], api: ApiClient, airflow: LocalAirflow, source: Path, s3_client: Any, bucket: str
) -> None:
    consumer_runs = api.get(f"/dags/{CONSUMER}/dagRuns")["total_entries"]
    run_id = api.trigger(DAG, {"source": str(source), "store": f"s3://{bucket}/dry", "dry_run": True})
    run = api.wait_for_run(DAG, run_id, timeout=300)
    assert run["state"] == "success"
    found = states(api, run_id)
    assert found["convert_unit"] == {"skipped"}
    assert found["publish_release"] == {"skipped"}
    plan = api.xcom(DAG, run_id, "plan_release", key="plan")
    assert plan["dry_run"] is True
    assert plan["unchanged"] is False
    assert plan["version"] == run["run_after"][:10].replace("-", ".")
    assert sum(plan["counts"].values()) + plan["quarantined"] == IMAGES
    assert keys(s3_client, bucket, "dry/releases/") == [], "a dry run must claim and publish nothing"
    assert keys(s3_client, bucket, "dry/runs/") == [], "a dry run leaves no workspace behind"
    assert f"run {run_id} succeeded: dry run: would publish release {plan['version']}" in wait_until(
        lambda: summaries(airflow) if run_id in summaries(airflow) else None, 60, "the dry run's summary"
    )
    assert api.get(f"/dags/{CONSUMER}/dagRuns")["total_entries"] == consumer_runs, "no release, no asset event"
