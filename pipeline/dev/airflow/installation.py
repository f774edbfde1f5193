"""One local Airflow installation as a context manager: migrate, start every component, wait, stop by PID.

It only composes: :mod:`.settings` (environment), :mod:`.db` (migration, PostgreSQL database), :mod:`.components`
(the processes), :mod:`.rest` (the API client and health check), :mod:`pipeline.dev.processes` (stopping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pipeline.dev.airflow.components import start_ui, start_workers
from pipeline.dev.airflow.db import ensure_postgres_database, migrate
from pipeline.dev.airflow.rest import ApiClient, healthy
from pipeline.dev.airflow.settings import ADMIN_USER, API_PORT, CelerySettings, admin_password, airflow_env
from pipeline.dev.processes import ProcessGroups
from pipeline.dev.waiting import wait_until
from pipeline.errors import LocalAirflowError


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
    procs: ProcessGroups = field(default_factory=ProcessGroups)

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
        return ApiClient(self.base_url, ADMIN_USER, admin_password(self.home))

    def start(self) -> LocalAirflow:
        """Migrate, start the components, wait until the API answers.

        Raises:
            LocalAirflowError: A component exited while starting (its log is in :attr:`log_dir`).
            TimeoutError: The API did not answer within ``startup_timeout`` seconds.
        """
        env = self.env
        if self.celery is not None:
            ensure_postgres_database(self.celery.database_url)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        migrate(env, self.log_dir / "migrate.log")
        self.procs = start_ui(env, self.log_dir)
        if self.celery is not None:
            start_workers(env, self.log_dir, list(self.workers), self.celery.queue, self.procs)
        wait_until(self._up, self.startup_timeout, f"the Airflow API at {self.base_url}")
        return self

    def _up(self) -> bool:
        dead = self.procs.dead()
        if dead:
            raise LocalAirflowError(
                f"Airflow components exited while starting: {dead}; see their logs in {self.log_dir}"
            )
        return healthy(self.base_url)

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
