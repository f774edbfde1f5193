"""pipeline.run.alerts: the release DAG's deadline, the alert's message, and the notifiers it is handed to."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import PipelineError, UsageError
from pipeline.run import alerts

DAGS = Path(__file__).resolve().parents[3] / "dags"
HEAVY = ("pandas", "pyarrow", "boto3", "botocore", "great_expectations", "PIL", "numpy", "airflow", "s3fs")
QUEUED = dt.datetime(2026, 11, 26, 2, 0, 5, tzinfo=dt.UTC)
RUN_ID = "scheduled__2026-11-26T02:00:00+00:00"


def context(deadline_time: Any = QUEUED + dt.timedelta(hours=3), state: str = "running") -> dict[str, Any]:
    """What Airflow hands a deadline callback: the run as the REST API shows it, and the deadline."""
    run = {"dag_id": "nih_cxr_release", "dag_run_id": RUN_ID, "state": state, "queued_at": "2026-11-26T02:00:05Z"}
    return {"dag_run": run, "deadline": {"id": "0190", "deadline_time": deadline_time}}


def late_alert(**environ: str) -> alerts.MissedDeadline:
    now = QUEUED + dt.timedelta(hours=3, minutes=2, seconds=7)
    return alerts.missed_deadline(context(), now=now, environ=environ)


class FileNotifier:
    """A stand-in for an Airflow notifier that the tests can read back: it writes what it was asked to send."""

    def __init__(self, out: str, text: str) -> None:
        self.out, self.text = out, text

    def __call__(self, context: dict[str, Any]) -> None:
        Path(self.out).write_text(self.text.replace("{{ message }}", context["message"]))


def test_importing_the_alerts_pulls_in_nothing_heavy() -> None:
    code = f"import sys, pipeline.run.alerts; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", "the DAG file imports this module at parse time"


def test_the_deadline_is_three_hours_unless_the_setting_says_otherwise() -> None:
    assert alerts.deadline_interval({}) == dt.timedelta(hours=3)
    assert alerts.deadline_interval({"CXR_DEADLINE_MINUTES": " 45 "}) == dt.timedelta(minutes=45)
    assert alerts.deadline_interval({"CXR_DEADLINE_MINUTES": "0.5"}) == dt.timedelta(seconds=30)
    assert alerts.deadline_interval({"CXR_DEADLINE_MINUTES": "0"}) is None, "0 declares no deadline"


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "3h"])
def test_a_bad_deadline_setting_is_refused_with_what_to_write(value: str) -> None:
    with pytest.raises(UsageError, match=r"CXR_DEADLINE_MINUTES=.* must be a number of minutes, 0 or more"):
        alerts.deadline_interval({"CXR_DEADLINE_MINUTES": value})


def test_the_message_names_the_run_how_late_it_is_and_where_to_look() -> None:
    message = late_alert(AIRFLOW__API__BASE_URL="https://airflow.example.org/").message()
    assert message.startswith(f"Deadline missed: nih_cxr_release run {RUN_ID} missed its deadline by 2m 07s.")
    assert "queued at 2026-11-26T02:00:05Z (deadline 2026-11-26T05:00:05Z, 3h 00m 00s allowed)" in message
    assert "at 2026-11-26T05:02:12Z (3h 02m 07s after it was queued) it is still running" in message
    url = "https://airflow.example.org/dags/nih_cxr_release/runs/scheduled__2026-11-26T02%3A00%3A00%2B00%3A00"
    assert f"task's log in {url}:" in message


def test_without_the_ui_address_the_message_still_says_where_to_look() -> None:
    assert f"in the Airflow UI, DAG nih_cxr_release, run {RUN_ID}:" in late_alert().message()


def test_a_run_that_failed_before_its_deadline_is_reported_as_failed() -> None:
    now = QUEUED + dt.timedelta(hours=4)
    message = alerts.missed_deadline(context(state="failed"), now=now, environ={}).message()
    assert "it has failed (its failure summary says why)" in message


def test_the_deadline_may_come_as_text_as_it_does_through_the_callback_table() -> None:
    as_text = alerts.missed_deadline(context("2026-11-26T05:00:05+00:00"), now=QUEUED + dt.timedelta(hours=4))
    assert as_text.deadline == QUEUED + dt.timedelta(hours=3)
    assert as_text.late_by == dt.timedelta(hours=1)


def test_the_record_is_one_json_object_with_the_run_and_the_lateness() -> None:
    record = late_alert().record()
    assert json.loads(json.dumps(record)) == record
    assert (record["event"], record["dag_id"], record["run_id"]) == ("deadline_missed", "nih_cxr_release", RUN_ID)
    assert record["late_by_s"] == 127.0
    assert record["queued_at"] == "2026-11-26T02:00:05Z"
    assert record["message"] == late_alert().message()


def test_the_file_notifier_appends_one_json_line_per_alert(tmp_path: Path) -> None:
    path = tmp_path / "alerts" / "deadline.jsonl"
    alerts.deadline_missed(context(), file=str(path))
    alerts.deadline_missed(context(state="queued"), file=str(path))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["run_id"], line["state"]) for line in lines] == [(RUN_ID, "running"), (RUN_ID, "queued")]


def test_the_settings_come_from_the_workers_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deadline.jsonl"
    monkeypatch.setenv("CXR_DEADLINE_FILE", str(path))
    alerts.deadline_missed(context())
    assert json.loads(path.read_text())["run_id"] == RUN_ID


def test_a_configured_notifier_gets_the_message_for_its_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sent.txt"
    monkeypatch.setenv("CXR_DEADLINE_NOTIFIER", f"{__name__}.FileNotifier")
    monkeypatch.setenv("CXR_DEADLINE_NOTIFIER_KWARGS", json.dumps({"out": str(out), "text": ":alarm: {{ message }}"}))
    alerts.deadline_missed(context())
    assert out.read_text().startswith(f":alarm: Deadline missed: nih_cxr_release run {RUN_ID} missed its deadline")


def test_an_airflow_notifier_renders_the_message_into_its_template_fields(tmp_path: Path) -> None:
    """A real ``BaseNotifier``: its template fields are rendered with the context the callback adds to."""
    from airflow.sdk import BaseNotifier

    sent: list[str] = []

    class Notifier(BaseNotifier):
        template_fields = ("text",)

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

        def notify(self, context: Any) -> None:
            sent.append(self.text)

    alert = late_alert()
    module = type(sys)("cxr_test_notifiers")
    module.Notifier = Notifier  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        alerts.send_to_notifier("cxr_test_notifiers.Notifier", {"text": "{{ subject }}: {{ message }}"}, alert, {})
    finally:
        del sys.modules[module.__name__]
    assert sent == [f"{alert.subject()}: {alert.message()}"]


def test_a_broken_notifier_is_named_and_the_file_still_gets_the_alert(tmp_path: Path) -> None:
    path = tmp_path / "deadline.jsonl"
    with pytest.raises(PipelineError, match=r"not delivered: notifier no.such\.Notifier \(UsageError: .*importable"):
        alerts.deadline_missed(context(), file=str(path), notifier="no.such.Notifier")
    assert json.loads(path.read_text())["run_id"] == RUN_ID


def test_an_unwritable_alert_file_fails_the_callback_with_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(PipelineError, match=r"file .*not-a-folder/deadline\.jsonl .*make it writable by the workers"):
        alerts.deadline_missed(context(), file=str(blocker / "deadline.jsonl"))


@pytest.mark.parametrize("value", ["not json", '["a list"]'])
def test_notifier_arguments_must_be_a_json_object(value: str) -> None:
    with pytest.raises(UsageError, match=r"CXR_DEADLINE_NOTIFIER_KWARGS must be a JSON object"):
        alerts.NotifierSettings.from_env({"CXR_DEADLINE_NOTIFIER_KWARGS": value})


def _release_dag(monkeypatch: pytest.MonkeyPatch, minutes: str | None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    if minutes is None:
        monkeypatch.delenv("CXR_DEADLINE_MINUTES", raising=False)
    else:
        monkeypatch.setenv("CXR_DEADLINE_MINUTES", minutes)
    bag = DagBag(dag_folder=str(DAGS / "nih_cxr_release.py"))
    assert bag.import_errors == {}
    return bag.dags["nih_cxr_release"]


def test_the_release_dag_declares_the_deadline_with_this_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import DeadlineReference, SyncCallback

    (alert,) = _release_dag(monkeypatch, None).deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == dt.timedelta(hours=3)
    assert isinstance(alert.callback, SyncCallback), "run by the executor: no triggerer needed"
    module, _, name = alert.callback.path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is alerts.deadline_missed
    assert not _release_dag(monkeypatch, "0").deadline, "0 declares no deadline"
