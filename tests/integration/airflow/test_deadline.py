"""A real Airflow (api-server, scheduler, dag-processor; LocalExecutor) raises the release DAG's deadline alert.

The deadline is made short on purpose (``CXR_DEADLINE_MINUTES=0.05``: 3 s after a run is queued), far less than a
dry run needs, so the run is late by construction; the file notifier (``CXR_DEADLINE_FILE``) must then hold one
JSON line naming the DAG and that run, written while the run was still going, and the run must finish as usual.
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
DEADLINE_MINUTES = "0.05"


def alerts_in(path: Path) -> list[dict[str, Any]]:
    """Every alert the file notifier wrote so far (one JSON object a line)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def alert_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deadline-alerts") / "alerts" / "deadline.jsonl"


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo, s3_client: Any, alert_file: Path
) -> Iterator[LocalAirflow]:
    """One Airflow whose release DAG has a 3 s deadline and the file notifier; the store through ``AWS_*``."""
    extra = {
        "AWS_ENDPOINT_URL": s3_stack.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_stack.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_stack.secret_access_key,
        "CXR_SOURCE": "",  # the scheduled run made by unpausing fails at once
        "CXR_STORE": f"s3://{new_bucket(s3_client, 'deadline')}/nightly",
        "CXR_DEADLINE_MINUTES": DEADLINE_MINUTES,
        "CXR_DEADLINE_FILE": str(alert_file),
    }
    with LocalAirflow(tmp_path_factory.mktemp("airflow-deadline"), free_api_port(), extra) as running:
        running.client().wait_for_dag(DAG)
        yield running


@pytest.fixture(scope="module")
def api(airflow: LocalAirflow) -> ApiClient:
    return airflow.client()


@pytest.fixture(scope="module")
def late_run(api: ApiClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A dry run of one archive, triggered right after unpausing: queued behind the scheduled run, then run."""
    source = synthetic_mirror(tmp_path_factory, "deadline-mirror", images=24, seed=5)
    api.unpause(DAG)
    run_id = api.trigger(DAG, {"source": str(source), "shards": ["images_001.zip"], "dry_run": True})
    return dict(api.get(f"/dags/{DAG}/dagRuns/{run_id}"))


@pytest.fixture(scope="module")
def alert(late_run: dict[str, Any], alert_file: Path) -> dict[str, Any]:
    run_id = late_run["dag_run_id"]

    def written() -> dict[str, Any] | None:
        return next((found for found in alerts_in(alert_file) if found["run_id"] == run_id), None)

    return wait_until(written, 90, f"the deadline alert for run {run_id} in {alert_file}")


def test_the_file_notifier_names_the_dag_and_the_late_run(alert: dict[str, Any], late_run: dict[str, Any]) -> None:
    assert alert["event"] == "deadline_missed"
    assert alert["dag_id"] == DAG
    assert alert["run_id"] == late_run["dag_run_id"]
    assert alert["state"] in ("queued", "running"), "the alert goes out while the run is still going"
    assert alert["queued_at"] == late_run["queued_at"][:19] + "Z"
    assert alert["late_by_s"] >= 0
    assert alert["noticed_at"] >= alert["deadline"] > alert["queued_at"]
    assert f"{DAG} run {late_run['dag_run_id']} missed its deadline by" in alert["message"]
    assert alert["run_url"].startswith("http://127.0.0.1:")
    assert alert["run_url"].endswith(
        f"/dags/{DAG}/runs/" + late_run["dag_run_id"].replace(":", "%3A").replace("+", "%2B")
    )


def test_each_late_run_is_alerted_once(alert: dict[str, Any], alert_file: Path) -> None:
    run_ids = [found["run_id"] for found in alerts_in(alert_file)]
    assert len(run_ids) == len(set(run_ids)), f"a run was alerted twice: {run_ids}"
    assert all(found["dag_id"] == DAG for found in alerts_in(alert_file))


def test_the_callback_logs_the_alert(alert: dict[str, Any], airflow: LocalAirflow) -> None:
    def logged() -> str | None:
        for path in airflow.home.rglob("*.log"):
            text = path.read_text(errors="replace")
            if f"Deadline missed: {DAG} run {alert['run_id']} missed its deadline" in text:
                return text
        return None

    text = wait_until(logged, 30, "the deadline callback's warning in a log under the Airflow home")
    assert "Look at the run's grid" in text


def test_a_late_run_still_finishes_as_usual(alert: dict[str, Any], late_run: dict[str, Any], api: ApiClient) -> None:
    run = api.wait_for_run(DAG, late_run["dag_run_id"], timeout=240)
    assert run["state"] == "success"
    assert alert["noticed_at"] < run["end_date"][:19] + "Z", "the alert came before the run ended"
