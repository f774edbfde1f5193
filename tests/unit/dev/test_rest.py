"""pipeline.dev.airflow.rest against a tiny Airflow-like REST server on loopback (http.server, real HTTP)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from pipeline.dev.airflow.rest import ApiClient, healthy
from pipeline.errors import AirflowApiError, UsageError


class FakeAirflow(BaseHTTPRequestHandler):
    """Answers like Airflow's API v2: a token for admin/secret, then scripted answers per ``METHOD path``."""

    script: ClassVar[dict[str, list[tuple[int, Any]]]] = {}
    seen: ClassVar[list[tuple[str, str, str | None, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        key = f"{self.command} {self.path}"
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        if key == "POST /auth/token":
            ok = body == {"username": "admin", "password": "secret"}
            status, answer = (201, {"access_token": "tok-1"}) if ok else (401, {"detail": "Invalid credentials"})
        elif self.headers.get("Authorization") != "Bearer tok-1" and self.path != "/api/v2/monitor/health":
            status, answer = 403, {"detail": "Not authenticated"}
        elif self.script.get(key):
            status, answer = self.script[key].pop(0) if len(self.script[key]) > 1 else self.script[key][0]
        else:
            status, answer = 404, {"detail": f"no {key}"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[str]:
    FakeAirflow.script, FakeAirflow.seen = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeAirflow)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_logs_in_once_and_sends_the_token(server: str) -> None:
    FakeAirflow.script["GET /api/v2/dags/d"] = [(200, {"dag_id": "d"})]
    api = ApiClient(server + "/", "admin", "secret")
    assert api.get("/dags/d") == {"dag_id": "d"}
    assert api.get("/dags/d") == {"dag_id": "d"}
    logins = [s for s in FakeAirflow.seen if s[1] == "/auth/token"]
    assert len(logins) == 1
    assert [s[2] for s in FakeAirflow.seen if s[1] != "/auth/token"] == ["Bearer tok-1", "Bearer tok-1"]


def test_wrong_password_is_an_api_error_with_the_status(server: str) -> None:
    with pytest.raises(AirflowApiError, match=r"POST /auth/token: HTTP 401: .*Invalid credentials") as error:
        ApiClient(server, "admin", "wrong").get("/dags")
    assert error.value.status == 401
    assert not error.value.retryable


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(UsageError, match="must be http"):
        ApiClient("file:///etc/passwd", "admin", "secret")


def test_trigger_sends_the_conf_and_returns_the_run_id(server: str) -> None:
    FakeAirflow.script["POST /api/v2/dags/d/dagRuns"] = [(200, {"dag_run_id": "manual__1"})]
    FakeAirflow.script["PATCH /api/v2/dags/d"] = [(200, {"is_paused": False})]
    api = ApiClient(server, "admin", "secret")
    api.unpause("d")
    assert api.trigger("d", {"dry_run": True}) == "manual__1"
    bodies = {path: body for method, path, _, body in FakeAirflow.seen if method != "GET"}
    assert bodies["/api/v2/dags/d"] == {"is_paused": False}
    assert bodies["/api/v2/dags/d/dagRuns"] == {"conf": {"dry_run": True}, "logical_date": None}


def test_waits_for_a_dag_until_it_is_parsed_and_for_a_run_until_it_finished(server: str) -> None:
    FakeAirflow.script["GET /api/v2/dags/d"] = [(404, {}), (404, {}), (200, {"dag_id": "d"})]
    runs = [(200, {"state": "queued"}), (200, {"state": "running"}), (200, {"state": "failed", "x": 1})]
    FakeAirflow.script["GET /api/v2/dags/d/dagRuns/r"] = runs
    api = ApiClient(server, "admin", "secret")
    assert api.wait_for_dag("d", timeout=10) == {"dag_id": "d"}
    assert api.wait_for_run("d", "r", timeout=10) == {"state": "failed", "x": 1}


def test_a_server_error_while_waiting_for_a_dag_is_raised_not_waited_out(server: str) -> None:
    FakeAirflow.script["GET /api/v2/dags/d"] = [(500, {"detail": "boom"})]
    with pytest.raises(AirflowApiError, match="HTTP 500") as error:
        ApiClient(server, "admin", "secret").wait_for_dag("d", timeout=10)
    assert error.value.status == 500


def test_backfill_is_retried_while_sqlite_is_busy(server: str) -> None:
    busy = [(503, {"detail": "busy"}), (500, {"detail": "Database error"}), (200, {"id": 7})]
    FakeAirflow.script["POST /api/v2/backfills"] = busy
    assert ApiClient(server, "admin", "secret").backfill({"dag_id": "d"}, timeout=30) == {"id": 7}
    refused = [(409, {"detail": "already running"})]
    FakeAirflow.script["POST /api/v2/backfills"] = refused
    with pytest.raises(AirflowApiError, match=r"HTTP 409: .*already running"):
        ApiClient(server, "admin", "secret").backfill({"dag_id": "d"}, timeout=30)


def test_task_instances_and_xcom_values(server: str) -> None:
    tis = {"task_instances": [{"task_id": "a"}, {"task_id": "b"}], "total_entries": 2}
    FakeAirflow.script["GET /api/v2/dags/d/dagRuns/r/taskInstances?limit=1000"] = [(200, tis)]
    xcom = "/api/v2/dags/d/dagRuns/r/taskInstances/t/xcomEntries/return_value?deserialize=true"
    FakeAirflow.script["GET " + xcom] = [(200, {"value": {"version": "v1"}})]
    api = ApiClient(server, "admin", "secret")
    assert [ti["task_id"] for ti in api.task_instances("d", "r")] == ["a", "b"]
    assert api.xcom("d", "r", "t") == {"version": "v1"}


def test_health_check(server: str) -> None:
    FakeAirflow.script["GET /api/v2/monitor/health"] = [(200, {"metadatabase": {"status": "healthy"}})]
    assert healthy(server)
    assert not healthy("http://127.0.0.1:9")  # nothing listens on the discard port
