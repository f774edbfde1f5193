"""A small client of a local Airflow's REST API v2, logged in with a JWT from the simple auth manager.

Tests and operators' scripts drive the local Airflow through it as they would a remote one: unpause, trigger,
backfill, wait for a run, read task instances and XComs. Errors are :class:`~pipeline.errors.AirflowApiError`
with the HTTP status.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from pipeline.dev.waiting import wait_until
from pipeline.errors import AirflowApiError, UsageError

FINISHED = frozenset({"success", "failed"})
TIMEOUT_S = 30.0
_SQLITE_BUSY = "Database error"  # a 500 raised mid-transaction while the scheduler holds SQLite's write lock


def healthy(base_url: str) -> bool:
    """Whether ``<base_url>/api/v2/monitor/health`` answers with a success status."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=2):  # noqa: S310 (http(s) URL)
            return True
    except OSError:
        return False


class ApiClient:
    """A client of Airflow's REST API v2 with a JWT from the simple auth manager (``POST /auth/token``)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        if urlparse(base_url).scheme not in ("http", "https"):
            raise UsageError(f"the Airflow API base URL must be http(s)://HOST:PORT, not {base_url!r}")
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
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (http(s) URL)
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise AirflowApiError(exc.code, method, path, exc.read().decode(errors="replace")) from None
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
            except AirflowApiError as exc:
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
        """``POST /backfills``; retried while SQLite is busy (answered as 503, or as a 500 "Database error")."""

        def created() -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self.post("/backfills", body)
            except AirflowApiError as exc:
                if exc.status == 503 or (exc.status == 500 and _SQLITE_BUSY in str(exc)):
                    return None
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
