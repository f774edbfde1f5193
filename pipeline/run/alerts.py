"""Deadline alerts: how long a release run may take, and what is said and sent when it takes longer.

The DAG declares one Airflow deadline alert (``DeadlineReference.DAGRUN_QUEUED_AT`` + :func:`deadline_interval`)
whose callback is :func:`deadline_missed`; Airflow calls it in a worker (``SyncCallback``, run by the executor)
when a run has not succeeded by then. It logs one warning (dag id, run id, how late, where to look) and hands the
same alert to every notifier the deployment configured:

- ``CXR_DEADLINE_MINUTES``: the deadline, in minutes after the run was queued (default 180; fractions allowed,
  ``0.5`` is 30 s; ``0`` declares no deadline). Read when the dag-processor parses the DAG file, so a change
  applies to runs created after the next parse; a DAG param cannot change it.
- ``CXR_DEADLINE_FILE``: a file that gets one JSON line per alert (:meth:`MissedDeadline.record`).
- ``CXR_DEADLINE_NOTIFIER``: the import path of an Airflow notifier class (``SlackNotifier``, ``SmtpNotifier``, any
  ``BaseNotifier``), built with the JSON object in ``CXR_DEADLINE_NOTIFIER_KWARGS`` and called with a context
  that adds ``message``, ``subject`` and ``deadline_alert`` (the record) for its templates: ``"{{ message }}"``.

The notifier settings are read where the callback runs (the workers' environment). Standard library only at
import time: the DAG file imports this module when it is parsed.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from pipeline.errors import PipelineError, UsageError

log = logging.getLogger(__name__)

DEADLINE_MINUTES_ENV = "CXR_DEADLINE_MINUTES"
DEADLINE_FILE_ENV = "CXR_DEADLINE_FILE"
NOTIFIER_ENV = "CXR_DEADLINE_NOTIFIER"
NOTIFIER_KWARGS_ENV = "CXR_DEADLINE_NOTIFIER_KWARGS"
#: Where the run's page is: Airflow's own setting, when the worker has it in its environment.
UI_BASE_URL_ENV = "AIRFLOW__API__BASE_URL"
DEFAULT_DEADLINE_MINUTES = 180.0


def deadline_interval(environ: Mapping[str, str] = os.environ) -> dt.timedelta | None:
    """How long after it was queued a run must have succeeded: ``$CXR_DEADLINE_MINUTES``; None when it is 0.

    Raises:
        UsageError: The value is not a number of minutes, 0 or more.
    """
    text = environ.get(DEADLINE_MINUTES_ENV, "").strip()
    if not text:
        return dt.timedelta(minutes=DEFAULT_DEADLINE_MINUTES)
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not minutes >= 0 or minutes == float("inf"):  # also refuses nan
        raise UsageError(
            f"{DEADLINE_MINUTES_ENV}={text!r} must be a number of minutes, 0 or more (e.g. 180, or 0.5 for 30 s; "
            "0 declares no deadline): fix it in the dag-processor's environment"
        )
    return dt.timedelta(minutes=minutes) if minutes else None


@dataclass(frozen=True)
class NotifierSettings:
    """Where an alert goes besides the log; each field None when not configured.

    Attributes:
        file: The JSON-lines file (``$CXR_DEADLINE_FILE``).
        notifier: Import path of an Airflow notifier class (``$CXR_DEADLINE_NOTIFIER``).
        notifier_kwargs: Its constructor's arguments (``$CXR_DEADLINE_NOTIFIER_KWARGS``, a JSON object).
    """

    file: str | None = None
    notifier: str | None = None
    notifier_kwargs: Mapping[str, Any] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> NotifierSettings:
        """The settings from the environment of the process the callback runs in.

        Raises:
            UsageError: ``$CXR_DEADLINE_NOTIFIER_KWARGS`` is not a JSON object.
        """
        text = environ.get(NOTIFIER_KWARGS_ENV, "").strip()
        try:
            kwargs = json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            kwargs, problem = None, f"not JSON: {exc}"
        else:
            problem = "" if kwargs is None or isinstance(kwargs, dict) else f"a JSON {type(kwargs).__name__}"
        if problem:
            raise UsageError(
                f"{NOTIFIER_KWARGS_ENV} must be a JSON object of the notifier's arguments, e.g. "
                f'{{"slack_conn_id": "slack", "text": "{{{{ message }}}}"}}; it is {problem}'
            )
        return cls(environ.get(DEADLINE_FILE_ENV) or None, environ.get(NOTIFIER_ENV) or None, kwargs)


@dataclass(frozen=True)
class MissedDeadline:
    """One run that had not succeeded by its deadline, as the callback saw it."""

    dag_id: str
    run_id: str
    state: str
    queued_at: dt.datetime | None
    deadline: dt.datetime
    noticed_at: dt.datetime
    run_url: str | None = None

    @property
    def late_by(self) -> dt.timedelta:
        """How long past the deadline the alert went out."""
        return max(self.noticed_at - self.deadline, dt.timedelta(0))

    def subject(self) -> str:
        """A short line for an e-mail subject or a chat message's title."""
        return f"{self.dag_id} run {self.run_id} missed its deadline by {duration_text(self.late_by)}"

    def message(self) -> str:
        """What the log and every notifier say: which run, how late, and where to look."""
        queued = f"queued at {_iso(self.queued_at)}" if self.queued_at else "queued"
        allowed = f", {duration_text(self.deadline - self.queued_at)} allowed" if self.queued_at else ""
        since = f" ({duration_text(self.noticed_at - self.queued_at)} after it was queued)" if self.queued_at else ""
        where = self.run_url or f"the Airflow UI, DAG {self.dag_id}, run {self.run_id}"
        return (
            f"Deadline missed: {self.subject()}. It was {queued} (deadline {_iso(self.deadline)}{allowed}); at "
            f"{_iso(self.noticed_at)}{since} it {_state_text(self.state)}. Look at the run's grid and its running or "
            f"queued task's log in {where}: a task waiting for a slot, a slow source or store, or a large input."
        )

    def record(self) -> dict[str, Any]:
        """The alert as one JSON-able dict (what the file notifier writes, one line each)."""
        return {
            "event": "deadline_missed",
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": self.state,
            "queued_at": _iso(self.queued_at) if self.queued_at else None,
            "deadline": _iso(self.deadline),
            "noticed_at": _iso(self.noticed_at),
            "late_by_s": round(self.late_by.total_seconds(), 3),
            "run_url": self.run_url,
            "message": self.message(),
        }


def duration_text(delta: dt.timedelta) -> str:
    """``3h 02m 05s``, ``2m 05s`` or ``5s`` (whole seconds, never negative)."""
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _state_text(state: str) -> str:
    """How the run stands, as the end of a sentence: ``is still running``, ``has failed``."""
    if state in ("queued", "running"):
        return f"is still {state}"
    return "has failed (its failure summary says why)" if state == "failed" else f"is in state {state}"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(value: Any) -> dt.datetime | None:
    """A timezone-aware datetime from what the callback's context holds (a datetime or an ISO string)."""
    if value is None or isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # Airflow keeps UTC
    return moment


def run_url(dag_id: str, run_id: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The run's page in the Airflow UI, when ``$AIRFLOW__API__BASE_URL`` says where the UI is."""
    base = environ.get(UI_BASE_URL_ENV, "").strip().rstrip("/")
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}" if base else None


def missed_deadline(
    context: Mapping[str, Any], now: dt.datetime | None = None, environ: Mapping[str, str] = os.environ
) -> MissedDeadline:
    """The alert from the context Airflow gives a deadline callback (``dag_run`` as the REST API shows it, and
    ``deadline`` with its ``deadline_time``)."""
    run = context.get("dag_run") or {}
    deadline = _moment((context.get("deadline") or {}).get("deadline_time"))
    noticed = now or dt.datetime.now(dt.UTC)
    dag_id, run_id = str(run.get("dag_id", "?")), str(run.get("dag_run_id") or run.get("run_id") or "?")
    return MissedDeadline(
        dag_id=dag_id,
        run_id=run_id,
        state=str(run.get("state") or "unknown"),
        queued_at=_moment(run.get("queued_at")),
        deadline=deadline or noticed,
        noticed_at=noticed,
        run_url=run_url(dag_id, run_id, environ),
    )


def write_alert_file(path: str, alert: MissedDeadline) -> None:
    """Append the alert as one JSON line to ``path`` (its folder is made when missing)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as out:
        out.write(json.dumps(alert.record(), sort_keys=True) + "\n")


def send_to_notifier(path: str, kwargs: Mapping[str, Any], alert: MissedDeadline, context: Mapping[str, Any]) -> None:
    """Build the Airflow notifier at import path ``path`` with ``kwargs`` and call it with the alert's context.

    Raises:
        UsageError: ``path`` does not name an importable class or function.
    """
    notifier = _import(path)(**kwargs)
    notifier({**context, "message": alert.message(), "subject": alert.subject(), "deadline_alert": alert.record()})


def _import(path: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError):
        found = None
    if not callable(found):
        raise UsageError(
            f"{NOTIFIER_ENV}={path!r} is not an importable notifier class in the workers' environment: give its "
            "full path, e.g. airflow.providers.slack.notifications.slack.SlackNotifier (install its provider)"
        )
    return cast("Callable[..., Any]", found)


def notify(alert: MissedDeadline, settings: NotifierSettings, context: Mapping[str, Any]) -> list[str]:
    """Hand the alert to every configured notifier; return what each failure was (the others still run)."""
    failures: list[str] = []
    if settings.file:
        try:
            write_alert_file(settings.file, alert)
        except OSError as exc:
            failures.append(f"file {settings.file} ({type(exc).__name__}: {exc}; make it writable by the workers)")
    if settings.notifier:
        try:
            send_to_notifier(settings.notifier, settings.notifier_kwargs or {}, alert, context)
        except Exception as exc:  # a broken notifier must not stop the file or hide the alert
            failures.append(f"notifier {settings.notifier} ({type(exc).__name__}: {exc})")
    return failures


def deadline_missed(
    context: Mapping[str, Any],
    file: str | None = None,
    notifier: str | None = None,
    notifier_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """The DAG's deadline callback: log the missed deadline, then notify (arguments override the environment).

    Raises:
        PipelineError: A notifier failed (each is named; the alert is in the log regardless).
    """
    alert = missed_deadline(context)
    log.warning("%s", alert.message())
    env = NotifierSettings.from_env()
    settings = NotifierSettings(file or env.file, notifier or env.notifier, notifier_kwargs or env.notifier_kwargs)
    if not (settings.file or settings.notifier):
        log.info("no notifier configured (%s, %s): the alert is in this log only", DEADLINE_FILE_ENV, NOTIFIER_ENV)
    failures = notify(alert, settings, context)
    if failures:
        raise PipelineError(
            f"deadline alert for {alert.dag_id} run {alert.run_id} not delivered: {'; '.join(failures)}"
        )
    log.info("deadline alert for %s run %s delivered", alert.dag_id, alert.run_id)


def deadline_left_out_of_test_runs(dag: Any) -> Any:
    """Let ``dag.test()`` and ``airflow dags test`` run a DAG that declares a deadline; return the DAG.

    Airflow 3.3.2 fails every successful test run of such a DAG at its very end (apache/airflow#73428: the test
    run's in-memory DAG holds the encoded alerts where the scheduler keeps their ids, and pruning them raises
    ``'dict' object has no attribute 'hex'``). A test run has no scheduler to watch a deadline anyway, so the DAG
    leaves its deadline out for the length of a test run only; runs made by the scheduler keep it.
    """
    run_test = dag.test

    @functools.wraps(run_test)
    def test(*args: Any, **kwargs: Any) -> Any:
        declared = dag.deadline
        dag.deadline = None
        try:
            return run_test(*args, **kwargs)
        finally:
            dag.deadline = declared

    dag.test = test
    return dag
