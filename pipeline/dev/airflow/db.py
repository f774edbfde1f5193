"""Database admin of a local Airflow: migrate its metadata database, create and drop a PostgreSQL database.

SQLite needs no admin beyond ``airflow db migrate``; for the CeleryExecutor the PostgreSQL database named in
:attr:`~pipeline.dev.airflow.settings.CelerySettings.database_url` is created when missing (and dropped by tests).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.dev.airflow.components import airflow_command
from pipeline.errors import UsageError


def migrate(env: dict[str, str], log_path: Path) -> None:
    """``airflow db migrate`` (idempotent); its output is appended to ``log_path``.

    Raises:
        subprocess.CalledProcessError: The migration failed (the reason is in ``log_path``).
    """
    with log_path.open("ab") as out:
        subprocess.run([*airflow_command(), "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def database_name(database_url: str) -> str:
    """The database of a PostgreSQL URL; only letters, digits and underscores (it is quoted into SQL).

    Raises:
        UsageError: The name has other characters.
    """
    name = urlparse(database_url).path.lstrip("/")
    if not name or not name.replace("_", "").isalnum():
        raise UsageError(
            f"database name {name!r} in the URL {database_url!r} must be letters, digits and underscores: "
            "set CXR_AIRFLOW_DATABASE_URL to a URL with such a name"
        )
    return name


def _pg_admin(database_url: str) -> Any:
    """A connection (autocommit) to the ``postgres`` database of the URL's server, as the URL's user."""
    import psycopg2

    url = urlparse(database_url)
    conn = psycopg2.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
    )
    conn.autocommit = True
    return conn


def ensure_postgres_database(database_url: str) -> bool:
    """Create the URL's PostgreSQL database unless it exists; return whether it was created."""
    name = database_name(database_url)
    conn = _pg_admin(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(f'CREATE DATABASE "{name}"')
            return True
    finally:
        conn.close()


def drop_postgres_database(database_url: str) -> None:
    """Drop the URL's PostgreSQL database (its connections are closed first)."""
    name = database_name(database_url)
    conn = _pg_admin(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
