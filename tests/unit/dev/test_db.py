"""pipeline.dev.airflow.db: migrating a real SQLite metadata database; PostgreSQL names checked before any SQL."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from pipeline.dev.airflow import db
from pipeline.dev.airflow.settings import airflow_env
from pipeline.errors import UsageError


@pytest.mark.integration
def test_migrate_creates_airflows_tables(airflow_db: Path) -> None:
    """``airflow_db`` (tests/airflow_home.py) is made by :func:`db.migrate`."""
    with sqlite3.connect(airflow_db / "airflow.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alembic_version", "dag", "dag_run", "task_instance", "connection"} <= tables


@pytest.mark.integration
def test_a_failed_migration_raises_and_leaves_the_reason_in_the_log(tmp_path: Path) -> None:
    env = airflow_env(tmp_path, extra={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent/dir/airflow.db"})
    log = tmp_path / "migrate.log"
    log.write_text("earlier output\n")
    with pytest.raises(subprocess.CalledProcessError):
        db.migrate(env, log)
    text = log.read_text()
    assert text.startswith("earlier output\n")  # appended
    assert "unable to open database file" in text


@pytest.mark.parametrize("name", ['x"; DROP DATABASE postgres; --', "with-dash", "", "a b"])
def test_a_database_name_that_is_not_an_identifier_is_refused_before_connecting(name: str) -> None:
    url = f"postgresql+psycopg2://127.0.0.1:1/{name}"  # port 1: a connection attempt would fail differently
    with pytest.raises(UsageError, match="letters, digits and underscores") as error:
        db.ensure_postgres_database(url)
    assert "CXR_AIRFLOW_DATABASE_URL" in str(error.value)
    with pytest.raises(UsageError):
        db.drop_postgres_database(url)


def test_database_name_of_a_url() -> None:
    assert db.database_name("postgresql+psycopg2://me@127.0.0.1:5432/cxr_airflow_local") == "cxr_airflow_local"
