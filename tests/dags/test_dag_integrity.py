"""Every DAG in dags/ imports cleanly, looks up nothing at parse time, and follows the project's rules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
#: What the dag-processor must never import for a DAG file or a callback: the pipeline's heavy dependencies.
HEAVY = ("pandas", "pyarrow", "boto3", "botocore", "great_expectations", "PIL", "numpy", "s3fs", "webdataset")


def _heavy_modules_pulled_in(*statements: str) -> list[str]:
    """The heavy top-level packages that running ``statements`` in a fresh interpreter adds to ``sys.modules``."""
    code = "; ".join(
        ["import sys", *statements, f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found: list[str] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return found


def _imports(nodes: list[ast.AST]) -> list[tuple[str, str]]:
    """(module imported, the import statement) of every import among ``nodes``."""
    found: list[tuple[str, str]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, f"import {alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", ast.unparse(node)))
    return found


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
    order = ["discover", "extract_shard", "curate_metadata", "plan_release", "convert_unit", "stage_release",
             "review_wanted", "review_release", "publish_release"]  # fmt: skip
    assert set(order) <= set(dag.task_ids)
    for upstream, downstream in [
        ("discover", "extract_shard"),
        ("extract_shard", "plan_release"),
        ("curate_metadata", "plan_release"),
        ("plan_release", "convert_unit"),
        ("convert_unit", "stage_release"),
        ("stage_release", "review_wanted"),
        ("review_wanted", "review_release"),
        ("review_release", "publish_release"),
        ("stage_release", "publish_release"),
    ]:
        assert downstream in dag.get_task(upstream).downstream_task_ids, f"{upstream} -> {downstream} missing"
    assert dag.catchup is False
    assert {"source", "store", "release", "split_mode", "seed", "review"} <= set(dag.params.keys())
    review = dag.get_task("review_release")
    assert review.options == ["Approve", "Reject"]
    assert review.defaults == ["Reject"], "no answer in time rejects"


def test_dag_files_import_only_stdlib_pendulum_the_task_sdk_and_stdlib_only_project_modules_at_top_level() -> None:
    allowed = set(sys.stdlib_module_names) | {"pendulum", "airflow", "__future__", "pipeline"}
    for path in DAGS.glob("*.py"):
        for name, statement in _imports(list(ast.parse(path.read_text()).body)):
            assert name.split(".")[0] in allowed, f"{path.name}: top-level import of {name}"
            assert not name.startswith("airflow") or name == "airflow.sdk", f"{path.name}: {name} (use airflow.sdk)"
            if name.split(".")[0] == "pipeline":  # a project module: only one that imports the standard library alone
                assert _heavy_modules_pulled_in(statement) == [], f"{path.name}: {statement} pulls in heavy modules"


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_parsing_a_dag_file_pulls_in_nothing_heavy(path: Path) -> None:
    assert _heavy_modules_pulled_in(f"import runpy; runpy.run_path({str(path)!r})") == []


def test_the_callbacks_and_the_consumer_import_only_stdlib_light_modules() -> None:
    """The run summaries run in the dag-processor: their imports may not pull pandas, pyarrow or boto3 in there."""
    release = ast.parse((DAGS / "nih_cxr_release.py").read_text())
    summarise = next(n for n in ast.walk(release) if isinstance(n, ast.FunctionDef) and n.name == "_summarise")
    consumer = ast.parse((DAGS / "nih_cxr_consumer.py").read_text())
    found = _imports([*ast.walk(summarise), *ast.walk(consumer)])
    project = [(name, statement) for name, statement in found if name.split(".")[0] == "pipeline"]
    assert project, "the callbacks say how a run ended with pipeline.run.summary"
    assert all("tasks" not in statement for _, statement in project), project
    assert _heavy_modules_pulled_in(*[statement for _, statement in project]) == []


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
        "val_fraction",
        "test_fraction",
        "shards",
        "data_entry",
        "checksums",
        "annotations",
        "variant_size",
        "shard_size_mb",
        "min_shards",
        "dry_run",
        "force",
        "review",
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
        ("variant_size", 8),
        ("val_fraction", 1.0),
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


def test_publish_emits_a_release_asset_through_the_alias_the_consumer_is_scheduled_on(dagbag: Any) -> None:
    from airflow.sdk import AssetAlias

    alias = AssetAlias("nih_cxr_releases")
    assert alias in dagbag.dags["nih_cxr_release"].get_task("publish_release").outlets
    consumer = dagbag.dags["nih_cxr_consumer"]
    assert consumer.timetable.asset_condition == alias
    assert consumer.catchup is False


class _TaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def run_task(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Call the release DAG's ``_run`` as a task would, with the given params (no connection in this test)."""
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("nih_cxr_release_for_run", DAGS / "nih_cxr_release.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ti = _TaskInstance()
    monkeypatch.setattr(module, "_connection_fields", lambda conn_id: None)
    monkeypatch.delenv("CXR_SOURCE", raising=False)

    def call(stage: str, params: dict[str, Any]) -> Any:
        ctx = {"params": params, "run_id": "manual__t", "logical_date": None, "ti": ti}
        ctx["dag_run"] = types.SimpleNamespace(run_after=None)
        monkeypatch.setattr(module, "get_current_context", lambda: ctx)
        return module._run(stage)

    call.ti = ti  # type: ignore[attr-defined]
    return call


def test_bad_params_fail_the_task_at_once_as_cxr_exits_2(run_task: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.errors import EXIT_USAGE, UsageError, exit_code, is_retryable
    from pipeline.run import tasks

    with pytest.raises(AirflowFailException, match=r"^UsageError: no source given") as caught:
        run_task("discover", {"store": "s3://bkt/p"})
    assert "no source given" in run_task.ti.pushed["error"], "the run summary gets the reason"
    with pytest.raises(UsageError) as same:
        tasks.config_from_params({"store": "s3://bkt/p"}, "r")
    assert (exit_code(same.value), is_retryable(same.value)) == (EXIT_USAGE, False)
    assert caught.value.__cause__ is None, "the input's fault: no traceback"


def test_an_unreachable_store_is_left_to_airflows_retries(run_task: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import StoreUnavailableError, is_retryable

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CXR_STORE_RETRY_S", "0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    with pytest.raises(StoreUnavailableError) as caught:
        run_task("discover", {"source": "/nowhere", "store": "s3://bkt/p"})
    assert is_retryable(caught.value)


def test_a_bug_is_re_raised_with_its_traceback(run_task: Any) -> None:
    with pytest.raises(AttributeError):
        run_task("no_such_stage", {"source": "/nowhere", "store": "s3://bkt/p"})
    assert run_task.ti.pushed["error"].startswith("AttributeError: ")
