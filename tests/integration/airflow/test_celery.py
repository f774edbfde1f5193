"""The release DAG on the CeleryExecutor: PostgreSQL metadata, Redis broker, two worker processes.

The same configuration names as ``docker/compose.yaml`` (``AIRFLOW__CORE__EXECUTOR``,
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``, ``AIRFLOW__CELERY__BROKER_URL``, ...) on this machine's
PostgreSQL and Redis, with a throw-away database, Redis key prefix and queue. The store's endpoint
and keys come from the ``AWS_*`` environment here (the local, connection-less path).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.airflow.db import drop_postgres_database
from pipeline.dev.airflow.installation import LocalAirflow
from pipeline.dev.airflow.settings import CelerySettings
from pipeline.dev.ports import free_api_port
from pipeline.dev.stack import StackInfo
from tests.integration.airflow_helpers import new_bucket, synthetic_mirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "nih_cxr_release"
IMAGES = 48
REDIS_DB = 9


def _service_up(check: str) -> bool:
    import psycopg2
    import redis

    try:
        if check == "postgres":
            psycopg2.connect(host="127.0.0.1", port=5432, dbname="postgres", connect_timeout=3).close()
        else:
            redis.Redis(host="127.0.0.1", port=6379, socket_timeout=3).ping()
    except (psycopg2.Error, redis.RedisError) as exc:
        pytest.fail(f"{check} is not reachable on 127.0.0.1 (.ci/run starts it): {exc}")
    return True


@pytest.fixture(scope="module")
def celery() -> Iterator[CelerySettings]:
    """A fresh PostgreSQL database and Redis key prefix and queue; dropped and deleted afterwards."""
    import redis

    _service_up("postgres")
    _service_up("redis")
    tag = secrets.token_hex(4)
    settings = CelerySettings(
        database_url=f"postgresql+psycopg2://127.0.0.1:5432/cxr_airflow_{tag}",
        broker_url=f"redis://127.0.0.1:6379/{REDIS_DB}",
        queue=f"cxr-test-{tag}",
        key_prefix=f"cxr-test-{tag}:",
    )
    yield settings
    drop_postgres_database(settings.database_url)
    broker = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    for key in broker.scan_iter(match=f"{settings.key_prefix}*"):
        broker.delete(key)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_mirror(tmp_path_factory, "celery-mirror", images=IMAGES, seed=5)


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    return new_bucket(s3_client, "celery")


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo, celery: CelerySettings, bucket: str
) -> Iterator[LocalAirflow]:
    extra = {**s3_stack.env(), "CXR_SOURCE": "", "CXR_STORE": f"s3://{bucket}/nightly"}
    home = tmp_path_factory.mktemp("airflow-celery")
    with LocalAirflow(home, free_api_port(), extra, celery=celery, workers=("worker-1", "worker-2")) as running:
        yield running


@pytest.fixture(scope="module")
def run(airflow: LocalAirflow, source: Path, bucket: str) -> dict[str, Any]:
    api = airflow.client()
    api.wait_for_dag(DAG)
    api.unpause(DAG)  # the scheduled run of the latest night fails at once (no source) before ours starts
    conf = {"source": str(source), "store": f"s3://{bucket}/celery", "release": "2026.11.01-celery"}
    run_id = api.trigger(DAG, conf)
    return api.wait_for_run(DAG, run_id, timeout=480)


def test_metadata_in_postgres_and_tasks_through_redis(airflow: LocalAirflow, celery: CelerySettings) -> None:
    env = airflow.env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    health = airflow.client().get("/monitor/health")
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"
    assert sorted(airflow.procs.procs) == ["api-server", "dag-processor", "scheduler", "worker-1", "worker-2"]
    assert airflow.procs.dead() == []


def test_triggered_run_succeeds_and_publishes(
    run: dict[str, Any], airflow: LocalAirflow, s3_client: Any, bucket: str
) -> None:
    assert run["state"] == "success"
    api = airflow.client()
    summary = api.xcom(DAG, run["dag_run_id"], "publish_release")
    assert summary["published"] is True
    assert summary["version"] == "2026.11.01-celery"
    body = s3_client.get_object(Bucket=bucket, Key="celery/releases/latest.json")
    assert json.loads(body["Body"].read())["version"] == "2026.11.01-celery"
    assert sum(summary["counts"].values()) + summary["quarantined"] == IMAGES


def test_mapped_shard_tasks_ran_on_both_workers(run: dict[str, Any], airflow: LocalAirflow) -> None:
    tis = airflow.client().task_instances(DAG, run["dag_run_id"])
    shards = [ti for ti in tis if ti["task_id"] == "extract_shard"]
    assert len(shards) == 12
    assert {ti["state"] for ti in shards} == {"success"}
    assert {ti["hostname"] for ti in shards} == {"worker-1", "worker-2"}
    assert {ti["hostname"] for ti in tis if ti["state"] == "success"} <= {"worker-1", "worker-2"}


def test_every_component_stops_on_sigterm_by_pid(airflow: LocalAirflow, run: dict[str, Any]) -> None:
    groups = {proc.pid for proc in airflow.procs.procs.values()}
    airflow.stop()
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in groups and fields[0] != "Z":
                left.append(stat.parent.name)
    assert left == [], "processes of the components' groups (task processes included) survived the stop"
