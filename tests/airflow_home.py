"""Pytest plugin (loaded with ``-p tests.airflow_home``): Airflow in a throw-away home for the session.

Airflow reads its configuration when it is first imported, so the environment is set here, when
pytest loads the plugin, before any test imports Airflow. The metadata database is SQLite in a temp
directory that is removed at exit; nothing touches ``~/airflow``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pipeline.dev.airflow.db import migrate
from pipeline.dev.airflow.settings import airflow_env

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cxr-test-airflow-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
ENV = airflow_env(AIRFLOW_HOME)
for _key, _value in ENV.items():
    if _key.startswith("AIRFLOW"):
        os.environ[_key] = _value


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) for ``dag.test()``; returns the Airflow home."""
    log = AIRFLOW_HOME / "migrate.log"
    try:
        migrate(ENV, log)
    except subprocess.CalledProcessError:
        pytest.fail(f"airflow db migrate failed:\n{log.read_text()[-3000:]}")
    return AIRFLOW_HOME
