"""pipeline/dev/airflow/__main__.py: ``python -m pipeline.dev.airflow`` (``make scheduler|celery``), run for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.dev.airflow.__main__ import PROG, parse_args
from pipeline.dev.airflow.settings import API_PORT, REPO_ROOT


def test_defaults_are_the_local_executor_on_the_demo_workspace() -> None:
    args = parse_args([])
    assert (args.dir, args.port, args.executor, args.workers) == (".cxr", API_PORT, "local", 2)


def test_the_makefile_targets_run_this_module() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"{PROG} --executor local --port" in makefile
    assert f"{PROG} --executor celery --workers 2 --port" in makefile


def test_help_runs_without_starting_anything(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pipeline.dev.airflow", "--help"]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.startswith(f"usage: {PROG}")
    assert "--executor {local,celery}" in done.stdout


def test_a_wrong_executor_is_refused_with_usage(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pipeline.dev.airflow", "--executor", "kubernetes", "--dir", str(tmp_path)]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "invalid choice: 'kubernetes'" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was started or written
