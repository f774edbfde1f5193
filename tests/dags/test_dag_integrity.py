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


def test_dag_files_import_only_stdlib_pendulum_and_the_task_sdk_at_top_level() -> None:
    import ast
    import sys

    allowed = set(sys.stdlib_module_names) | {"pendulum", "airflow", "__future__"}
    for path in DAGS.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name}: top-level import of {name}"
                assert not name.startswith("airflow") or name == "airflow.sdk", f"{path.name}: {name} (use airflow.sdk)"


def test_release_dag_runs_nightly_in_utc_without_catchup_and_with_timeouts(dagbag: Any) -> None:
    dag = dagbag.dags["nih_cxr_release"]
    assert dag.timetable.expression == "0 2 * * *"
    assert str(dag.timetable.timezone) == "UTC"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.dagrun_timeout is not None
    for task in dag.tasks:
        assert task.execution_timeout is not None, f"{task.task_id} has no execution_timeout"
        assert task.execution_timeout <= dag.dagrun_timeout


def test_transient_errors_retry_with_exponential_back_off(dagbag: Any) -> None:
    for task in dagbag.dags["nih_cxr_release"].tasks:
        assert task.retry_exponential_backoff, task.task_id
        assert task.max_retry_delay is not None, task.task_id


def test_shard_and_unit_work_is_bounded_per_run_and_across_runs(dagbag: Any) -> None:
    dag = dagbag.dags["nih_cxr_release"]
    for task_id in ("extract_shard", "convert_unit"):
        task = dag.get_task(task_id)
        assert task.max_active_tis_per_dagrun == 2, task_id
        assert task.max_active_tis_per_dag == 4, task_id


def test_params_form_offers_every_run_option_with_the_pipeline_defaults(dagbag: Any) -> None:
    from pipeline.run.tasks import PARAM_DEFAULTS

    params = dagbag.dags["nih_cxr_release"].params
    wanted = {
        "source",
        "store",
        "release",
        "split_mode",
        "seed",
        "shards",
        "variant_size",
        "shard_size_mb",
        "dry_run",
        "force",
    }
    assert wanted | {"store_conn_id"} == set(params.keys())
    for key in params:
        assert params[key] == PARAM_DEFAULTS[key], f"{key}: form default differs from the pipeline's"
        assert params.get_param(key).schema.get("title"), f"{key} has no title in the form"
        assert params.get_param(key).description, f"{key} has no description in the form"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("release", "../2026"),
        ("store", "/not/s3"),
        ("seed", -1),
        ("variant_size", 4096),
        ("shard_size_mb", 0),
        ("split_mode", "random"),
    ],
)
def test_form_refuses_bad_values_before_a_run_starts(dagbag: Any, key: str, value: object) -> None:
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.dags["nih_cxr_release"].params)
    with pytest.raises(ParamValidationError):
        params[key] = value


def test_key_tasks_are_documented(dagbag: Any) -> None:
    dag = dagbag.dags["nih_cxr_release"]
    for task in dag.tasks:
        assert task.doc_md, f"{task.task_id} has no doc_md"
        assert f"#### {task.task_id}" in task.doc_md
    for words in ("Backfill", "dry_run", "cxr_store", "Unchanged inputs publish nothing new"):
        assert words in dag.doc_md


def test_runs_end_with_a_logged_summary(dagbag: Any) -> None:
    dag = dagbag.dags["nih_cxr_release"]
    assert dag.on_success_callback
    assert dag.on_failure_callback


def test_summary_says_what_was_published_or_where_it_failed() -> None:
    from pipeline.run.tasks import run_summary

    published = {"version": "2026.11.26", "published": True, "counts": {"train": 8}, "quarantined": 1, "manifest": "m"}
    assert "published release 2026.11.26 (train 8; 1 quarantined)" in run_summary("d", "r", published, None)
    unchanged = {**published, "published": False}
    assert "nothing new was published" in run_summary("d", "r", unchanged, None)
    dry = {"version": "2026.11.27", "dry_run": True, "unchanged": False, "counts": {}, "quarantined": 0}
    assert "dry run: would publish release 2026.11.27" in run_summary("d", "r", dry, None)
    failed = {"task": "extract_shard", "map_index": 3, "try_number": 1, "reason": "BadDataError: truncated zip"}
    text = run_summary("d", "r", None, failed)
    assert "failed at task extract_shard[3] on try 1: BadDataError: truncated zip" in text


def test_publish_emits_a_release_asset_through_the_alias_the_consumer_is_scheduled_on(dagbag: Any) -> None:
    from airflow.sdk import AssetAlias

    alias = AssetAlias("nih_cxr_releases")
    assert alias in dagbag.dags["nih_cxr_release"].get_task("publish_release").outlets
    consumer = dagbag.dags["nih_cxr_consumer"]
    assert consumer.timetable.asset_condition == alias
    assert consumer.catchup is False
