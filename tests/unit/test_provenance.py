"""pipeline.provenance: the git commit the code came from, the DAG bundle a task runs from, a manifest's provenance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pipeline
from pipeline import provenance
from pipeline.config import RunConfig, StoreConfig

HEAVY = ("pandas", "pyarrow", "boto3", "botocore", "great_expectations", "PIL", "numpy", "airflow", "s3fs")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that no git work tree above it can claim, and no commit in the environment."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv(provenance.CODE_COMMIT_ENV, raising=False)
    return tmp_path


@pytest.fixture
def repo(isolated: Path) -> Path:
    """A git work tree with one commit: a package with a module, and an ignored .venv folder."""
    root = isolated / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (root / ".gitignore").write_text(".venv/\n")
    (root / ".venv" / "site").mkdir(parents=True)
    (root / ".venv" / "site" / "other.py").write_text("Y = 2\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "first")
    return root


def test_code_in_a_git_work_tree_is_named_by_its_commit(repo: Path) -> None:
    assert provenance.code_commit(repo / "pkg") == {"commit": _git(repo, "rev-parse", "HEAD"), "dirty": False}


def test_a_changed_tracked_file_marks_the_commit_dirty_and_a_stray_file_does_not(repo: Path) -> None:
    (repo / "pkg" / "scratch.txt").write_text("notes\n")
    assert provenance.code_commit(repo / "pkg")["dirty"] is False  # type: ignore[index]
    (repo / "pkg" / "mod.py").write_text("X = 2\n")
    assert provenance.code_commit(repo / "pkg")["dirty"] is True  # type: ignore[index]


def test_code_installed_in_an_ignored_folder_of_a_work_tree_is_not_that_commit(repo: Path) -> None:
    assert provenance.code_commit(repo / ".venv" / "site") is None


def test_outside_a_work_tree_the_commit_comes_from_the_image_build(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert provenance.code_commit(isolated) is None
    monkeypatch.setenv(provenance.CODE_COMMIT_ENV, " 1a2b3c4d \n")
    assert provenance.code_commit(isolated) == {"commit": "1a2b3c4d", "dirty": False}


def test_without_a_git_program_the_commit_comes_from_the_environment(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert provenance.code_commit(repo / "pkg") is None
    monkeypatch.setenv(provenance.CODE_COMMIT_ENV, "feedbeef")
    assert provenance.code_commit(repo / "pkg") == {"commit": "feedbeef", "dirty": False}


def _task_instance(bundle: Any = None) -> Any:
    """A task instance as Airflow 3.3 builds it: the worker sets ``bundle_instance``; ``dag.test()`` sets none."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    fields: dict[str, Any] = {"task_id": "publish_release", "dag_id": "nih_cxr_release", "run_id": "manual__2026-12-02"}
    return RuntimeTaskInstance.model_construct(**fields, **({"bundle_instance": bundle} if bundle else {}))


def test_a_worker_task_names_the_bundle_and_the_version_it_ran() -> None:
    from airflow.dag_processing.bundles.local import LocalDagBundle

    versioned = LocalDagBundle(name="cxr-dags", path="/opt/airflow/dags", version="9f8e7d6c")
    unversioned = LocalDagBundle(name="dags-folder", path="/opt/airflow/dags")
    assert provenance.from_airflow_context({"ti": _task_instance(versioned)}) == {
        "bundle_name": "cxr-dags",
        "bundle_version": "9f8e7d6c",
    }
    assert provenance.from_airflow_context({"task_instance": _task_instance(unversioned)}) == {
        "bundle_name": "dags-folder",
        "bundle_version": None,
    }


def test_a_versioned_bundle_without_a_pinned_version_names_the_version_it_has() -> None:
    from airflow.dag_processing.bundles.local import LocalDagBundle

    class CheckedOutBundle(LocalDagBundle):  # as a git bundle with bundle versioning turned off
        supports_versioning = True

        def get_current_version(self) -> str:  # type: ignore[override]
            return "c0ffee00"

    found = provenance.from_airflow_context({"ti": _task_instance(CheckedOutBundle(name="git", path="/dags"))})
    assert found == {"bundle_name": "git", "bundle_version": "c0ffee00"}


def test_a_dag_test_run_and_a_context_without_a_task_instance_know_no_bundle() -> None:
    unknown = {"bundle_name": None, "bundle_version": None}
    assert provenance.from_airflow_context({"ti": _task_instance()}) == unknown
    assert provenance.from_airflow_context({}) == unknown


def _cfg(**kw: Any) -> RunConfig:
    return RunConfig(source="/s", store=StoreConfig("s3://bkt"), **kw)


def test_an_airflow_run_with_a_bundle_version_records_it_and_asks_no_git() -> None:
    cfg = _cfg(run_id="scheduled__2026-12-02", logical_date="2026-12-02T02:00:00+00:00", bundle_name="cxr-dags",
               bundle_version="9f8e7d6c")  # fmt: skip
    assert provenance.of_run(cfg) == {
        "pipeline_version": pipeline.__version__,
        "orchestrator": "airflow",
        "run_id": "scheduled__2026-12-02",
        "logical_date": "2026-12-02T02:00:00+00:00",
        "bundle_name": "cxr-dags",
        "bundle_version": "9f8e7d6c",
        "code": None,
    }


def test_a_cli_run_records_the_commit_of_this_checkout() -> None:
    record = provenance.of_run(_cfg(run_id="cli-20261202T100000-abcdef"))
    assert (record["orchestrator"], record["run_id"], record["logical_date"]) == (
        "cli",
        "cli-20261202T100000-abcdef",
        None,
    )
    assert record["code"] == provenance.code_commit()
    assert record["code"] is None or len(record["code"]["commit"]) == 40


def test_importing_provenance_pulls_in_nothing_heavy() -> None:
    code = f"import sys, pipeline.provenance; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", "the readers' client imports it through the manifest module"
