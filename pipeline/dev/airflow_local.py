"""Run Airflow on this machine without importing it: configuration, ``dags test``, the components, the REST API.

Used by ``cxr demo``, ``cxr ui``, ``python -m pipeline.dev.airflow_local`` (``make scheduler`` / ``make celery``)
and the test-suite. Everything binds to 127.0.0.1; the metadata database is SQLite under the Airflow home
unless :class:`CelerySettings` say PostgreSQL (and Redis as the Celery broker). Processes are started each
in its own session and stopped with SIGTERM by PID (SIGKILL after a grace period).

Celery workers on one machine get distinct names (``CXR_WORKER_NAME``, reported as the task instance's
hostname through ``[core] hostname_callable``) so the UI and the API show which worker ran what.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlparse

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
API_PORT = 8780
FORBIDDEN_PORTS = frozenset({8080, 8793})  # SeaweedFS's volume and Airflow's UI default; the log-server default
FINISHED = frozenset({"success", "failed"})
T = TypeVar("T")


def airflow_command() -> list[str]:
    """How long-running components are started: ``python -m airflow`` of this interpreter.

    Not the ``airflow`` console script: a task that starts a ``spawn`` process pool (``convert_unit``
    decodes images in one) makes every pool process re-run the parent's ``__main__``; the console
    script's ``import airflow`` then fails in task processes, whose database URL Airflow blanks out on
    purpose (``airflow-db-not-allowed:///``). A ``__main__`` run with ``-m`` is not re-run.
    """
    return [sys.executable, "-m", "airflow"]


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
        subprocess.run([*airflow_command(), "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def dags_test(env: dict[str, str], dag_id: str, conf: dict[str, object], log_path: Path) -> int:
    """Run one DAG run in-process with ``airflow dags test``; return its exit code."""
    cmd = [*airflow_command(), "dags", "test", dag_id, "--conf", json.dumps(conf)]
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
            [*airflow_command(), *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        log.info("started %s (pid %d)", name, self.procs[name].pid)

    def dead(self) -> list[str]:
        """Names of the components whose process has exited."""
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every component's process group; SIGKILL what is left of a group after ``grace`` seconds.

        A component is stopped when nothing of its group is left (its task processes and pools included).
        """
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM; killing it", name)
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            if not _wait_group_gone(proc.pid, max(2.0, deadline - time.monotonic())):
                log.warning("%s left processes behind; killing them", name)
                _signal_group(proc.pid, signal.SIGKILL)
                _wait_group_gone(proc.pid, 5.0)
        self.procs.clear()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies waiting to be reaped do not count)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if pgrp == str(pgid) and state != "Z":
                return True
    return False


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def start_ui(env: dict[str, str], log_dir: Path) -> Processes:
    """Start api-server, scheduler and dag-processor (each its own process)."""
    procs = Processes()
    procs.start("api-server", ["api-server", "--host", "127.0.0.1", "--port", env["AIRFLOW__API__PORT"]], env, log_dir)
    procs.start("scheduler", ["scheduler"], env, log_dir)
    procs.start("dag-processor", ["dag-processor"], env, log_dir)
    return procs


def start_workers(env: dict[str, str], log_dir: Path, names: list[str], queue: str, procs: Processes) -> None:
    """Start one Celery worker process per name (concurrency 1 each, serving ``queue``), added to ``procs``."""
    for name in names:
        worker_env = {**env, "CXR_WORKER_NAME": name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE}
        args = ["celery", "worker", "--concurrency", "1", "--queues", queue, "--celery-hostname", f"{name}@%h"]
        procs.start(name, [*args, "--skip-serve-logs", "--without-gossip", "--without-mingle"], worker_env, log_dir)


HOSTNAME_CALLABLE = "pipeline.dev.airflow_local.worker_hostname"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of local workers: ``$CXR_WORKER_NAME`` when set, else the machine's FQDN."""
    return os.environ.get("CXR_WORKER_NAME") or socket.getfqdn()


def free_api_port(low: int = 20000, high: int = 29000) -> int:
    """A port ``p`` with ``p`` and ``p + 1`` (the log server) free on 127.0.0.1; never 8080 or 8793."""
    from pipeline.dev.stack import is_port_free

    for _ in range(200):
        port = low + secrets.randbelow(high - low)
        if not {port, port + 1} & FORBIDDEN_PORTS and is_port_free(port) and is_port_free(port + 1):
            return port
    raise RuntimeError(f"no free port pair in {low}..{high}")


# --- CeleryExecutor with PostgreSQL and Redis ---------------------------------------------------------------


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


def _pg_admin(database_url: str) -> tuple[Any, str]:
    """A connection to the server's ``postgres`` database (autocommit) and the database name of the URL."""
    import psycopg2

    url = urlparse(database_url)
    name = url.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r} must be letters, digits and underscores")
    conn = psycopg2.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
    )
    conn.autocommit = True
    return conn, name


def ensure_postgres_database(database_url: str) -> bool:
    """Create the URL's PostgreSQL database unless it exists; return whether it was created."""
    conn, name = _pg_admin(database_url)
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
    conn, name = _pg_admin(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


# --- the REST API v2 ------------------------------------------------------------------------------------------


class ApiError(RuntimeError):
    """The Airflow API answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


class ApiClient:
    """A small client of Airflow's REST API v2 with a JWT from the simple auth manager (``POST /auth/token``)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        if urlparse(base_url).scheme not in ("http", "https"):
            raise ValueError(f"the API base URL must be http(s): {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _send(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = None if body is None else json.dumps(body).encode()
        url = self.base_url + path  # http(s) only: checked in __init__
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback URL built here)
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, method, path, exc.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    def token(self) -> str:
        """A JWT for the configured user (fetched once)."""
        if self._token is None:
            self._token = str(self._send("POST", "/auth/token", self._credentials, auth=False)["access_token"])
        return self._token

    def get(self, path: str) -> Any:
        """``GET /api/v2<path>``."""
        return self._send("GET", "/api/v2" + path)

    def post(self, path: str, body: Any) -> Any:
        """``POST /api/v2<path>`` with a JSON body."""
        return self._send("POST", "/api/v2" + path, body)

    def patch(self, path: str, body: Any) -> Any:
        """``PATCH /api/v2<path>`` with a JSON body."""
        return self._send("PATCH", "/api/v2" + path, body)

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; return its details."""

        def parsed() -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self.get(f"/dags/{dag_id}")
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            return found

        return wait_until(parsed, timeout, f"DAG {dag_id} to be parsed")

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (a cron DAG then gets a scheduled run for its latest interval)."""
        self.patch(f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any], logical_date: str | None = None) -> str:
        """Trigger a run with ``conf``; return its run id."""
        run: dict[str, Any] = self.post(f"/dags/{dag_id}/dagRuns", {"conf": conf, "logical_date": logical_date})
        return str(run["dag_run_id"])

    def backfill(self, body: dict[str, Any], timeout: float = 90.0) -> dict[str, Any]:
        """``POST /backfills``; retried while SQLite is busy (the scheduler holds the write lock).

        Busy shows as 503, or as a 500 "Database error" raised mid-transaction.
        """

        def created() -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self.post("/backfills", body)
            except ApiError as exc:
                if exc.status == 503 or (exc.status == 500 and "Database error" in str(exc)):
                    return None  # SQLite busy: answered as 503, or as a 500 "Database error" mid-transaction
                raise
            return found

        return wait_until(created, timeout, f"a backfill of {body.get('dag_id')} to be accepted", interval=2.0)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Wait until a run succeeded or failed; return it."""

        def finished() -> dict[str, Any] | None:
            run: dict[str, Any] = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in FINISHED else None

        return wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (mapped ones one per map index)."""
        found: dict[str, Any] = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        return list(found["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """One XCom value (deserialised)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true"
        return self.get(path)["value"]


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    """Call ``probe`` until it returns something truthy; raise TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL built here)
            return True
    except OSError:
        return False


# --- a whole installation as a context manager --------------------------------------------------------------


@dataclass
class LocalAirflow:
    """api-server, scheduler, dag-processor (and Celery workers) of one local installation.

    ``with LocalAirflow(home, port, extra) as airflow:`` migrates the metadata database, starts the
    components, waits for the API, and stops everything by PID on exit. ``celery`` switches to the
    CeleryExecutor (PostgreSQL database created if missing, Redis broker) with one worker per name in ``workers``.
    """

    home: Path
    api_port: int = API_PORT
    extra: dict[str, str] = field(default_factory=dict)
    celery: CelerySettings | None = None
    workers: tuple[str, ...] = ("worker-1", "worker-2")
    startup_timeout: float = 180.0
    procs: Processes = field(default_factory=Processes)

    @property
    def env(self) -> dict[str, str]:
        """The environment every component of this installation runs with."""
        extra = {**(self.celery.env() if self.celery else {}), **self.extra}
        return airflow_env(self.home, self.api_port, extra)

    @property
    def log_dir(self) -> Path:
        """Where each component's output goes (``<name>.log``)."""
        return self.home / "component-logs"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.api_port}"

    def client(self) -> ApiClient:
        """A REST API client logged in as the local ``admin``."""
        return ApiClient(self.base_url, "admin", admin_password(self.home))

    def start(self) -> LocalAirflow:
        """Migrate, start the components, wait until the API answers."""
        env = self.env
        if self.celery is not None:
            ensure_postgres_database(self.celery.database_url)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        migrate(env, self.log_dir / "migrate.log")
        self.procs = start_ui(env, self.log_dir)
        if self.celery is not None:
            start_workers(env, self.log_dir, list(self.workers), self.celery.queue, self.procs)

        def up() -> bool:
            if self.procs.dead():
                raise RuntimeError(f"Airflow components exited: {self.procs.dead()}; see {self.log_dir}")
            return _healthy(f"{self.base_url}/api/v2/monitor/health")

        wait_until(up, self.startup_timeout, f"the Airflow API at {self.base_url}")
        return self

    def stop(self) -> None:
        """Stop every component with SIGTERM (SIGKILL after a grace period)."""
        self.procs.stop()

    def __enter__(self) -> LocalAirflow:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.dev.airflow_local``: local Airflow (LocalExecutor, or CeleryExecutor with two workers)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.dev.airflow_local", description=main.__doc__)
    parser.add_argument("--dir", default=".cxr", help="workspace (Airflow home in DIR/airflow, S3 data in DIR/stack)")
    parser.add_argument("--port", type=int, default=API_PORT, help="API server port (the log server takes PORT+1)")
    parser.add_argument("--executor", choices=["local", "celery"], default="local")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (with --executor celery)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pipeline.dev import demo

    celery = local_celery_settings() if args.executor == "celery" else None
    return demo.run_ui(Path(args.dir), port=args.port, celery=celery, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
