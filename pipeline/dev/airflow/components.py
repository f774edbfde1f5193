"""Which ``airflow`` commands a local installation runs, and as which processes.

The long-running components (api-server, scheduler, dag-processor, Celery workers) are started each as its own
process group by :class:`pipeline.dev.processes.ProcessGroups`, their output in ``<log_dir>/<name>.log``;
``airflow dags test`` runs one DAG run in the foreground.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.dev.airflow.settings import worker_env
from pipeline.dev.processes import ProcessGroups

COMPONENTS = ("api-server", "scheduler", "dag-processor")


def airflow_command() -> list[str]:
    """How Airflow is started: ``python -m airflow`` of this interpreter.

    Not the ``airflow`` console script: a task that starts a ``spawn`` process pool (``convert_unit``
    decodes images in one) makes every pool process re-run the parent's ``__main__``; the console
    script's ``import airflow`` then fails in task processes, whose database URL Airflow blanks out on
    purpose (``airflow-db-not-allowed:///``). A ``__main__`` run with ``-m`` is not re-run.
    """
    return [sys.executable, "-m", "airflow"]


def dags_test(env: dict[str, str], dag_id: str, conf: dict[str, object], log_path: Path) -> int:
    """Run one DAG run in-process with ``airflow dags test``; return its exit code (output appended to the log)."""
    cmd = [*airflow_command(), "dags", "test", dag_id, "--conf", json.dumps(conf)]
    with log_path.open("ab") as out:
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def start_ui(env: dict[str, str], log_dir: Path) -> ProcessGroups:
    """Start api-server, scheduler and dag-processor (each its own process group)."""
    procs = ProcessGroups()
    api = ["api-server", "--host", "127.0.0.1", "--port", env["AIRFLOW__API__PORT"]]
    for name, args in zip(COMPONENTS, (api, ["scheduler"], ["dag-processor"]), strict=True):
        procs.start(name, [*airflow_command(), *args], env, log_dir / f"{name}.log")
    return procs


def start_workers(env: dict[str, str], log_dir: Path, names: list[str], queue: str, procs: ProcessGroups) -> None:
    """Start one Celery worker per name (concurrency 1 each, serving ``queue``), added to ``procs``."""
    for name in names:
        args = ["celery", "worker", "--concurrency", "1", "--queues", queue, "--celery-hostname", f"{name}@%h"]
        argv = [*airflow_command(), *args, "--skip-serve-logs", "--without-gossip", "--without-mingle"]
        procs.start(name, argv, worker_env(env, name), log_dir / f"{name}.log")
