"""pipeline.dev.airflow.components: the ``airflow`` commands of a local installation, run for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dev.airflow import components
from tests.airflow_home import ENV

pytestmark = pytest.mark.integration  # runs the real `airflow` command line


def test_airflow_runs_as_python_m_airflow_of_this_interpreter() -> None:
    assert components.airflow_command() == [sys.executable, "-m", "airflow"]
    argv = [*components.airflow_command(), "version"]
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True, check=True)
    assert done.stdout.strip().startswith("3.")


def test_dags_test_of_an_unknown_dag_fails_with_its_name_in_the_log(airflow_db: Path, tmp_path: Path) -> None:
    log = tmp_path / "dags-test.log"
    assert components.dags_test(ENV, "no_such_dag", {"dry_run": True}, log) != 0
    assert "no_such_dag" in log.read_text()
