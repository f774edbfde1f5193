"""Run Airflow on this machine without importing it: configuration, ``dags test`` and the UI processes.

Used by ``cxr demo``, ``cxr ui`` and the test-suite. Everything binds to 127.0.0.1; the metadata
database is SQLite under the Airflow home unless the caller says otherwise. Processes are started
each in its own session and stopped with SIGTERM by PID (SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
API_PORT = 8780


def airflow_bin() -> str:
    """The ``airflow`` executable beside this interpreter (the project's virtualenv)."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def _secret(home: Path, name: str) -> str:
    path = home / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_env(home: Path, api_port: int = API_PORT, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for every Airflow process of one local installation.

    The scheduler's log server takes ``api_port + 1`` (its default, 8793, would clash between installations).
    """
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "simple_auth_manager_passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
        passwords.chmod(0o600)
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
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(api_port + 1),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home, ".jwt_secret"),
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        }
    )
    env.update(extra or {})
    return env


def admin_password(home: Path) -> str:
    """The generated password of the local ``admin`` user."""
    data: dict[str, str] = json.loads((home / "simple_auth_manager_passwords.json").read_text())
    return data["admin"]


def migrate(env: dict[str, str], log_path: Path) -> None:
    """``airflow db migrate`` (idempotent)."""
    with log_path.open("ab") as out:
        subprocess.run([airflow_bin(), "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def dags_test(env: dict[str, str], dag_id: str, conf: dict[str, object], log_path: Path) -> int:
    """Run one DAG run in-process with ``airflow dags test``; return its exit code."""
    cmd = [airflow_bin(), "dags", "test", dag_id, "--conf", json.dumps(conf)]
    with log_path.open("ab") as out:
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


@dataclass
class Processes:
    """Airflow components started by PID, stopped with SIGTERM."""

    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = (log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [airflow_bin(), *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        log.info("started %s (pid %d)", name, self.procs[name].pid)

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, grace: float = 20.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM; killing it", name)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def start_ui(env: dict[str, str], log_dir: Path) -> Processes:
    """Start api-server, scheduler and dag-processor (each its own process)."""
    procs = Processes()
    procs.start("api-server", ["api-server", "--host", "127.0.0.1", "--port", env["AIRFLOW__API__PORT"]], env, log_dir)
    procs.start("scheduler", ["scheduler"], env, log_dir)
    procs.start("dag-processor", ["dag-processor"], env, log_dir)
    return procs
