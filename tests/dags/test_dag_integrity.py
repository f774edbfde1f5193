"""Every DAG in dags/ imports cleanly, looks up nothing at parse time, and follows the project's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(monkeypatch_module: pytest.MonkeyPatch) -> Any:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Connection, Variable

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"connection or variable looked up at DAG parse time: {args}")

    monkeypatch_module.setattr(BaseHook, "get_connection", classmethod(forbidden))
    monkeypatch_module.setattr(Variable, "get", staticmethod(forbidden))
    monkeypatch_module.setattr(Connection, "get", classmethod(forbidden))
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_dag_file_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    files = {Path(p).stem for p in DAGS.glob("*.py") if not p.name.startswith("_")}
    assert files <= set(dagbag.dag_ids), f"DAG files without a DAG: {files - set(dagbag.dag_ids)}"


def test_dags_are_tagged_documented_and_retried(dagbag: Any) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert len(dag.doc_md) > 100, f"{dag_id} doc_md is a stub"
        assert dag.dag_id == Path(dag.fileloc).stem
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} retries {task.retries} < 2"


def test_release_dag_is_wired_extract_validate_split_convert_publish(dagbag: Any) -> None:
    dag = dagbag.dags["nih_cxr_release"]
    order = ["discover", "extract_shard", "curate_metadata", "plan_release", "convert_unit", "publish_release"]
    assert set(order) <= set(dag.task_ids)
    for upstream, downstream in [
        ("discover", "extract_shard"),
        ("extract_shard", "plan_release"),
        ("curate_metadata", "plan_release"),
        ("plan_release", "convert_unit"),
        ("convert_unit", "publish_release"),
    ]:
        assert downstream in dag.get_task(upstream).downstream_task_ids, f"{upstream} -> {downstream} missing"
    assert dag.catchup is False
    assert {"source", "store", "release", "split_mode", "seed"} <= set(dag.params.keys())
