"""pipeline.dev.airflow.installation: what one local installation is made of, checked without starting Airflow.

Starting the real components is what tests/integration/airflow/ (test_scheduler, test_celery, ...) do.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from pipeline.dev.airflow.installation import LocalAirflow
from pipeline.dev.airflow.settings import CelerySettings, admin_password
from pipeline.dev.processes import ProcessGroups
from pipeline.errors import LocalAirflowError


def test_environment_combines_the_executor_and_the_extra_settings(tmp_path: Path) -> None:
    celery = CelerySettings("postgresql+psycopg2://127.0.0.1:5432/x", "redis://127.0.0.1:6379/1")
    extra = {"CXR_STORE": "s3://demo", "AIRFLOW__CORE__PARALLELISM": "2"}
    airflow = LocalAirflow(tmp_path, 24300, extra, celery=celery)
    env = airflow.env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == celery.database_url
    assert (env["CXR_STORE"], env["AIRFLOW__CORE__PARALLELISM"]) == ("s3://demo", "2")
    assert airflow.base_url == "http://127.0.0.1:24300" == env["AIRFLOW__API__BASE_URL"]
    assert airflow.log_dir == tmp_path / "component-logs"


def test_the_client_logs_in_as_the_local_admin(tmp_path: Path) -> None:
    airflow = LocalAirflow(tmp_path, 24301)
    airflow.env  # noqa: B018 (makes the home and its password)
    client = airflow.client()
    assert client.base_url == airflow.base_url
    assert client._credentials == {"username": "admin", "password": admin_password(tmp_path)}


def test_a_component_that_exits_while_starting_is_named(tmp_path: Path) -> None:
    airflow = LocalAirflow(tmp_path, 24302)
    airflow.procs = ProcessGroups()
    quitter = [sys.executable, "-c", "raise SystemExit(1)"]
    airflow.procs.start("scheduler", quitter, dict(os.environ), tmp_path / "s.log")
    airflow.procs.procs["scheduler"].wait(timeout=10)
    with pytest.raises(LocalAirflowError, match=rf"exited while starting: \['scheduler'\]; see .*{tmp_path.name}"):
        airflow._up()
    airflow.stop()
    assert airflow.procs.procs == {}


def test_leaving_the_context_stops_every_component_with_sigterm(tmp_path: Path) -> None:
    airflow = LocalAirflow(tmp_path, 24303)
    for name in ("api-server", "scheduler"):
        airflow.procs.start(name, ["sleep", "60"], dict(os.environ), tmp_path / f"{name}.log")
    leaders = list(airflow.procs.procs.values())
    started = time.monotonic()
    airflow.__exit__(None, None, None)
    assert time.monotonic() - started < 5
    assert [proc.returncode for proc in leaders] == [-15, -15]
    assert airflow.procs.dead() == []
