"""pipeline.dev.airflow.settings: the environment of a local Airflow home, made without starting anything."""

from __future__ import annotations

import importlib
import json
import stat
from pathlib import Path

import pytest

from pipeline.dev.airflow import settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_env_points_every_component_at_this_home_and_port(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    env = settings.airflow_env(home, api_port=24100)
    assert env["AIRFLOW_HOME"] == str(home)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home.resolve()}/airflow.db"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(settings.DAGS_FOLDER)
    assert (settings.DAGS_FOLDER / "nih_cxr_release.py").is_file()
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__PORT"] == "24100"
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "24101"  # never the shared default 8793
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:24100/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert sorted(p.name for p in home.iterdir()) == [".jwt_secret", settings.PASSWORDS_FILE]  # no airflow.db yet


def test_secrets_are_private_and_stable_across_calls(tmp_path: Path) -> None:
    first = settings.airflow_env(tmp_path)
    second = settings.airflow_env(tmp_path, api_port=24200)
    assert first["AIRFLOW__API_AUTH__JWT_SECRET"] == second["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    passwords = Path(first["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert _mode(passwords) == _mode(tmp_path / ".jwt_secret") == 0o600
    password = settings.admin_password(tmp_path)
    assert json.loads(passwords.read_text()) == {"admin": password}
    assert password not in json.dumps(first)  # the password reaches Airflow as a file, not in the environment
    other = settings.airflow_env(tmp_path / "other")
    assert other["AIRFLOW__API_AUTH__JWT_SECRET"] != first["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_extra_overrides_and_the_callers_environment_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXR_SOMETHING", "kept")
    env = settings.airflow_env(tmp_path, extra={"AIRFLOW__CORE__PARALLELISM": "1", "CXR_STORE": "s3://b"})
    assert (env["CXR_SOMETHING"], env["AIRFLOW__CORE__PARALLELISM"], env["CXR_STORE"]) == ("kept", "1", "s3://b")


def test_celery_settings_switch_executor_database_and_queue() -> None:
    url = "postgresql+psycopg2://127.0.0.1:5432/cxr_test"
    env = settings.CelerySettings(url, "redis://127.0.0.1:6379/3", queue="q", key_prefix="p:").env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + url
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/3"
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "q"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "p:"


def test_local_celery_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXR_AIRFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("CXR_CELERY_BROKER_URL", raising=False)
    assert settings.local_celery_settings().database_url.endswith("/cxr_airflow_local")
    monkeypatch.setenv("CXR_AIRFLOW_DATABASE_URL", "postgresql+psycopg2://db:5433/mine")
    monkeypatch.setenv("CXR_CELERY_BROKER_URL", "redis://r:6380/2")
    chosen = settings.local_celery_settings()
    assert (chosen.database_url, chosen.broker_url) == ("postgresql+psycopg2://db:5433/mine", "redis://r:6380/2")


def test_a_worker_reports_its_name_through_the_hostname_callable(monkeypatch: pytest.MonkeyPatch) -> None:
    env = settings.worker_env({"A": "1"}, "worker-2")
    assert env["A"] == "1"
    module, _, name = env["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    callable_ = getattr(importlib.import_module(module), name)  # what Airflow does with [core] hostname_callable
    monkeypatch.setenv("CXR_WORKER_NAME", env["CXR_WORKER_NAME"])
    assert callable_() == "worker-2"
    monkeypatch.delenv("CXR_WORKER_NAME")
    assert callable_()  # the machine's name
