"""The environment of one local Airflow home: paths, ports, auth, executor; nothing here starts a process.

Celery workers on one machine get distinct names (``CXR_WORKER_NAME``, reported as the task instance's hostname
through ``[core] hostname_callable`` = :data:`HOSTNAME_CALLABLE`) so the UI and the API show which worker ran what.
Airflow imports :func:`worker_hostname` inside its worker processes: this module imports only the standard library.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
DAGS_FOLDER = REPO_ROOT / "dags"
API_PORT = 8780
ADMIN_USER = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
HOSTNAME_CALLABLE = f"{__name__}.worker_hostname"


def _secret(home: Path, name: str) -> str:
    """A random secret kept in ``home/name`` (0600), made on first use."""
    path = home / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _passwords_file(home: Path) -> Path:
    """The simple auth manager's password file with a generated password for :data:`ADMIN_USER` (0600)."""
    passwords = home / PASSWORDS_FILE
    if not passwords.exists():
        passwords.write_text(json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}))
        passwords.chmod(0o600)
    return passwords


def airflow_env(home: Path, api_port: int = API_PORT, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for every Airflow process of one local installation (the current environment, overridden).

    Creates ``home`` with its JWT secret and the ``admin`` password on first use. The scheduler's log server
    takes ``api_port + 1`` (its default, 8793, would clash between installations).
    """
    home.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{api_port}"
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home.resolve()}/airflow.db",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_passwords_file(home)),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(api_port + 1),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home, ".jwt_secret"),
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        }
    )
    env.update(extra or {})
    return env


def admin_password(home: Path) -> str:
    """The generated password of the local ``admin`` user (made by :func:`airflow_env`)."""
    data: dict[str, str] = json.loads((home / PASSWORDS_FILE).read_text())
    return data[ADMIN_USER]


def worker_env(env: dict[str, str], name: str) -> dict[str, str]:
    """The environment of the Celery worker ``name``: ``env`` plus the name it reports as its hostname."""
    return {**env, "CXR_WORKER_NAME": name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE}


def worker_hostname() -> str:
    """``[core] hostname_callable`` of local workers: ``$CXR_WORKER_NAME`` when set, else the machine's FQDN."""
    return os.environ.get("CXR_WORKER_NAME") or socket.getfqdn()


@dataclass(frozen=True)
class CelerySettings:
    """Where a CeleryExecutor installation keeps its metadata (PostgreSQL) and its queue (Redis).

    Attributes:
        database_url: SQLAlchemy URL, ``postgresql+psycopg2://[user@]host:port/database``.
        broker_url: ``redis://host:port/db``; keys get ``key_prefix`` so installations can share a Redis.
        queue: The Celery queue every task goes to (the workers serve only it).
    """

    database_url: str
    broker_url: str
    queue: str = "cxr"
    key_prefix: str = "cxr:"

    def env(self) -> dict[str, str]:
        """The Airflow environment variables of this executor setup."""
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.database_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CELERY__POOL": "solo",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.key_prefix,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
        }


def local_celery_settings() -> CelerySettings:
    """This machine's PostgreSQL and Redis for ``make celery``.

    ``$CXR_AIRFLOW_DATABASE_URL`` and ``$CXR_CELERY_BROKER_URL`` override the defaults (database
    ``cxr_airflow_local`` on 127.0.0.1:5432 as the current user; Redis db 11 on 127.0.0.1:6379).
    """
    return CelerySettings(
        database_url=os.environ.get("CXR_AIRFLOW_DATABASE_URL")
        or "postgresql+psycopg2://127.0.0.1:5432/cxr_airflow_local",
        broker_url=os.environ.get("CXR_CELERY_BROKER_URL") or "redis://127.0.0.1:6379/11",
        queue="cxr-local",
        key_prefix="cxr-local:",
    )
