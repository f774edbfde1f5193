"""
### NIH ChestX-ray14 release

Turns the NIH ChestX-ray14 archives and metadata CSVs in a source location into a versioned,
validated, ML-ready release on S3-compatible object storage:

`discover` → `extract_shard` (one mapped task per image archive) → `curate_metadata`
(normalise + Great Expectations) → `plan_release` (patient-level splits, version, units) →
`stop_if_dry_run` → `convert_unit` (mapped: Parquet + WebDataset) → `stage_release` (every file written and
verified, no manifest yet) → `review_wanted` → `review_release` (a person approves or rejects; only with the
`review` param) → `publish_release` (manifest last, then `latest`; emits an asset event through the alias
`nih_cxr_releases`; a rejected release is removed instead).

**Schedule**: nightly at 02:00 UTC, `catchup=False`. A run's version is its logical date `YYYY.MM.DD`
(`.2`, `.3`... for a second, different release that day). **Unchanged inputs publish nothing new**: the
run skips unchanged archives, converts nothing and reports the release that already holds them.

**Params** (trigger form; the same options as `cxr run`'s flags, declared once in `pipeline/options.py`):
`source` (default `$CXR_SOURCE`), `store` (`s3://bucket/prefix`, default `$CXR_STORE`), `release` (version
override), `split_mode`, `seed`, `val_fraction` and `test_fraction`, `shards` (subset of archives), `data_entry`
and `checksums` (which metadata file and md5 list), `annotations` (annotation layers, each `ID=LOCATION`:
label versions, expert labels, boxes, relabels; docs/annotations.md), `variant_size` (downsized PNG, 0 = none),
`shard_size_mb` (WebDataset shard size), `min_shards` (shards per split, at least), `dry_run` (plan only),
`force` (rebuild although unchanged), `review` (publish only once a person approves, docs/operations.md),
`store_conn_id` (Airflow connection with the store's endpoint and keys; the DAG's only option that `cxr run` has not).

**Credentials**: the AWS-type connection `cxr_store` (`endpoint_url` in its extra), looked up when a task
runs; without it the `AWS_*` environment variables apply. Never in params, logs, XCom or the manifest.

**Backfill** (Airflow 3 backfills: UI, `airflow backfill create`, `POST /api/v2/backfills`, use
max active runs 1): each date builds version `YYYY.MM.DD` of that date from the source *as it is now*;
dates whose inputs a published release already holds publish nothing and report that release's version;
`latest` never moves back to an older version.

**Failures**: bad data or parameters fail at once without retries; an unreachable store is retried with
exponential back-off (the error kinds and whether a retry helps: `pipeline/errors.py`, which `cxr` uses too).
The run's summary (version, counts, or the failed task and why) is logged by the DAG's callbacks.

**Deadline**: a run that has not succeeded `$CXR_DEADLINE_MINUTES` (default 180) after it was queued raises a
deadline alert: `pipeline.run.alerts.deadline_missed` logs which run, how late and where to look, and notifies
the file in `$CXR_DEADLINE_FILE` and/or the Airflow notifier in `$CXR_DEADLINE_NOTIFIER` (docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import (
    Asset,
    AssetAlias,
    DeadlineAlert,
    DeadlineReference,
    Param,
    SyncCallback,
    TriggerRule,
    dag,
    get_current_context,
    task,
    teardown,
)

from pipeline import options  # standard library only: the options table, safe at parse time
from pipeline.review import decision  # standard library only: the review's options and timeout
from pipeline.run import alerts  # standard library only: the deadline and its callback

log = logging.getLogger(__name__)

RELEASES = AssetAlias("nih_cxr_releases")
#: pipeline.config.check_version as a JSON-schema pattern (made in pipeline.options from the same parts).
VERSION_PATTERN = options.VERSION_FORM_PATTERN
#: The trigger form: one Param per run option of the options table, with its default, range and help.
PARAMS = {
    option.name: Param(option.default, description=options.form_description(option), **options.form_schema(option))
    for option in options.OPTIONS
}

#: Hours a leftover workspace must be idle before the DAG's clean-up removes it; None: no clean-up task.
CLEAN_IDLE_HOURS = options.clean_idle_hours()
REASON_HELP = "Why you reject it (kept with the run), or a note on your approval (kept in the manifest)."
REVIEW_DOC = """
#### review_release
Waits for a person (review on: the `review` param). The page shows the staged release's brief: counts per split,
validation, quarantine, changes since the parent, the staged card. **Approve** publishes it; **Reject** (say why)
removes the staged files and frees the version. No answer within `$CXR_REVIEW_HOURS` (default 24) hours rejects.
"""

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 3,
    "retry_delay": dt.timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
    "execution_timeout": dt.timedelta(hours=1),
}


def _deadline() -> DeadlineAlert | None:
    """The run's deadline: ``$CXR_DEADLINE_MINUTES`` (read at parse time) after it was queued; None when 0."""
    interval = alerts.deadline_interval()
    if interval is None:
        return None
    callback = SyncCallback(alerts.deadline_missed)  # run by the executor, where the tasks run
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=interval, callback=callback)


def _connection_fields(conn_id: str) -> dict[str, Any] | None:
    """The store connection's fields, looked up at run time; None when the connection does not exist."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    return {"login": conn.login, "password": conn.password, "extra": conn.extra_dejson}


def _run(stage: str, *args: Any) -> Any:
    """Call one `pipeline.run.tasks` function with the run's config; bad data fails without retry.

    Errors map as `cxr` maps them (`pipeline.errors.exit_code` and `is_retryable`): a kind that a retry cannot help
    fails the task at once, one that a retry can help is retried with back-off, anything else is a bug.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline import config, errors, provenance
    from pipeline.run import connections, tasks

    ctx = get_current_context()
    params = dict(ctx["params"])
    logical = ctx.get("logical_date") or ctx["dag_run"].run_after
    try:
        conn_id = config.store_conn_id(params.get("store_conn_id"))
        fields = _connection_fields(conn_id)
        when = logical.isoformat() if logical else None
        bundle = provenance.from_airflow_context(ctx)
        cfg = tasks.config_from_params(params, ctx["run_id"], when, fields, bundle)
        origin = f"connection {conn_id!r}" if fields is not None else "the AWS_* environment"
        log.info("store %s, settings from %s", connections.describe(cfg.store), origin)
        return getattr(tasks, stage)(cfg, *args)
    except Exception as exc:
        _record_error(ctx, exc)
        if errors.exit_code(exc) is None:
            log.error("internal error (a bug, not the input): %s; its traceback follows", errors.one_line(exc))
            raise
        # One line on top of the task log says what failed and what to do; Airflow's own report follows it.
        _log_failure(errors.one_line(exc), exc)
        if errors.is_retryable(exc):
            raise
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from None  # the input's fault: no traceback


def _log_failure(line: str, exc: BaseException) -> None:
    """Log ``line`` (what failed and what to do) first, then the message's further lines, if any."""
    log.error("%s", line)
    details = str(exc).strip().splitlines()[1:]
    if details:
        log.error("%s", "\n".join(details))


def _record_error(ctx: Any, exc: BaseException) -> None:
    """Keep the reason for the run's failure summary (error messages carry no credentials)."""
    try:
        ctx["ti"].xcom_push(key="error", value=f"{type(exc).__name__}: {exc}"[:2000])
    except Exception:  # the summary loses its reason; the task's own error must still surface
        log.warning("could not keep the error for the run summary", exc_info=True)


def _summarise(context: Any) -> None:
    """DAG callback: log one paragraph on how the run ended (runs in the dag-processor: stdlib-only imports)."""
    from pipeline.run import summary

    ti, reason = context.get("ti"), str(context.get("reason") or "")
    outcome: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    if reason != "success":
        failure = {"reason": f"the run {reason.replace('_', ' ')}"}
        if ti is not None:
            error = _pull(ti, task_ids=ti.task_id, map_indexes=ti.map_index, key="error")
            failure = {"task": ti.task_id, "map_index": ti.map_index, "try_number": ti.try_number}
            failure["reason"] = error or f"{reason.replace('_', ' ')} (see the task's log)"
    elif ti is not None:
        outcome = _pull(ti, task_ids="publish_release") or _pull(ti, task_ids="plan_release", key="plan")
    log.info("%s", summary.run_summary(context["dag"].dag_id, context["run_id"], outcome, failure))


def _pull(ti: Any, **kwargs: Any) -> Any:
    """``ti.xcom_pull``, or None where a callback cannot reach XCom (``dag.test()`` runs callbacks in-process)."""
    try:
        return ti.xcom_pull(**kwargs)
    except Exception as exc:  # the summary loses a detail; the callback must not fail with a traceback
        log.warning("run summary: could not read XCom %s (%s: %s)", kwargs, type(exc).__name__, exc)
        return None


@task(execution_timeout=dt.timedelta(minutes=15))
def discover() -> list[dict[str, Any]]:
    """
    #### discover
    Lists the image archives and metadata files in the source (and creates the store's bucket if
    needed). One `extract_shard` task is mapped per archive; the `shards` param narrows the list.
    A missing required file fails here without retries.
    """
    return list(_run("discover"))


@task(max_active_tis_per_dagrun=2, max_active_tis_per_dag=4, execution_timeout=dt.timedelta(hours=3))
def extract_shard(shard: dict[str, Any]) -> dict[str, Any]:
    """
    #### extract_shard
    Streams one archive into the raw zone (`raw/shards/<archive>/`), checking every PNG; bad members
    go to quarantine. An archive whose bytes are unchanged since its last extraction is skipped.
    At most 2 run at once per run, 4 across runs (backfills): each holds one archive stream and its uploads.
    """
    return dict(_run("extract_shard", shard))


@task(execution_timeout=dt.timedelta(minutes=30))
def curate_metadata() -> dict[str, Any]:
    """
    #### curate_metadata
    Normalises the metadata CSVs and validates them with the suites in `expectations/`.
    Blocking failures stop the run here (no retries); the results stay in the run's workspace.
    """
    return dict(_run("curate_metadata"))


@task(execution_timeout=dt.timedelta(hours=1))
def plan_release(shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> list[dict[str, Any]]:
    """
    #### plan_release
    Joins images and rows, assigns patient-level splits, chooses the version and cuts the work into
    units. Returns the units (none when the inputs are unchanged); XCom `plan` holds `version`,
    `unchanged`, `counts` and `quarantined`. In a **dry run** it only previews: the version that
    *would* be published, with nothing claimed.
    """
    planned = dict(_run("plan_or_preview", list(shard_results), curated))
    units = list(planned.pop("units"))
    get_current_context()["ti"].xcom_push(key="plan", value=planned)
    return units


@task.short_circuit(execution_timeout=dt.timedelta(minutes=5))
def stop_if_dry_run() -> bool:
    """
    #### stop_if_dry_run
    Skips `convert_unit` and `publish_release` in a dry run; otherwise lets them run.
    """
    return bool(_run("should_publish"))


@task(max_active_tis_per_dagrun=2, max_active_tis_per_dag=4, execution_timeout=dt.timedelta(hours=3))
def convert_unit(unit: dict[str, Any]) -> dict[str, Any]:
    """
    #### convert_unit
    Writes one WebDataset shard and its Parquet part into the release's folder (not yet visible:
    a release exists only once its manifest does).
    """
    return dict(_run("convert_unit", unit))


@task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=dt.timedelta(hours=2))  # runs with no unit too
def stage_release() -> dict[str, Any]:
    """
    #### stage_release
    Writes the release's side files (metadata, quarantine, validation, card, Croissant), re-reads and verifies
    every file and checks the accounting, but keeps the manifest back: the release is staged, not visible.
    Unchanged inputs stage nothing.
    """
    return dict(_run("stage_release"))


@task.short_circuit(ignore_downstream_trigger_rules=False, execution_timeout=dt.timedelta(minutes=5))
def review_wanted(staged: dict[str, Any]) -> bool:
    """
    #### review_wanted
    Lets `review_release` ask a person only when the `review` param is on and a release was staged;
    otherwise skips it, and `publish_release` publishes at once.
    """
    return bool(staged.get("staged") and staged.get("review_wanted"))


def review_release() -> Any:
    """The review page: the staged release's brief; Approve publishes, Reject (or no answer in time) drops it."""
    from airflow.providers.standard.operators.hitl import HITLOperator  # the standard provider's human-in-the-loop

    staged = "ti.xcom_pull(task_ids='stage_release')"
    return HITLOperator(
        task_id="review_release",
        subject=f"Publish release {{{{ {staged}['version'] }}}}?",
        body=f"{{{{ {staged}['brief'] }}}}",
        options=list(decision.OPTIONS),
        defaults=[decision.REJECT],  # what a timeout chooses
        params={decision.REASON_PARAM: Param("", type="string", title="Reason", description=REASON_HELP)},
        response_timeout=decision.review_timeout(),
        doc_md=REVIEW_DOC,
    )


@task(trigger_rule=TriggerRule.NONE_FAILED, outlets=[RELEASES], execution_timeout=dt.timedelta(hours=2))
def publish_release(staged: dict[str, Any]) -> dict[str, Any]:
    """
    #### publish_release
    Writes `manifest.json` (the moment the release becomes visible), moves `releases/latest.json` (never
    back to an older version), and for a new release adds an event for the asset
    `s3://<bucket>/<prefix>/releases/<version>/manifest.json` through the alias `nih_cxr_releases`.
    With review on, does what the reviewer chose: Reject (or no answer) removes the staged files instead.
    Unchanged inputs: nothing new is published and no asset event is emitted.
    """
    review = get_current_context()["ti"].xcom_pull(task_ids="review_release") if staged.get("review_wanted") else None
    summary = dict(_run("publish_staged", staged, review))
    if summary.get("published"):
        extra = {key: summary[key] for key in ("version", "counts", "quarantined")}
        get_current_context()["outlet_events"][RELEASES].add(Asset(summary["manifest"]), extra=extra)
    return summary


@teardown
@task(execution_timeout=dt.timedelta(minutes=30))
def clean_workspaces() -> dict[str, Any]:
    """
    #### clean_workspaces
    Only when `$CXR_CLEAN_IDLE_HOURS` is set: removes the store's leftover run workspaces (failed, rejected or
    abandoned runs) idle that long, and the unpublished release folders they claimed; never this run's, never a
    published release. A teardown: it runs however the run ends, and its outcome does not change the run's.
    """
    return dict(_run("clean_workspaces", CLEAN_IDLE_HOURS))


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=20),
    default_args=DEFAULT_ARGS,
    on_success_callback=_summarise,
    on_failure_callback=_summarise,
    deadline=_deadline(),
    tags=["nih-cxr", "release"],
    params=PARAMS,
)
def nih_cxr_release() -> None:
    shards = discover()
    curated = curate_metadata()
    shards >> curated  # discover also makes sure the bucket exists
    # Mapped tasks do not take doc_md from their docstring by themselves.
    extracted = extract_shard.override(doc_md=extract_shard.function.__doc__).expand(shard=shards)
    planned = plan_release(extracted, curated)
    converted = convert_unit.override(doc_md=convert_unit.function.__doc__).expand(unit=planned)
    staged = stage_release()
    planned >> stop_if_dry_run() >> converted >> staged
    published = publish_release(staged)
    review_wanted(staged) >> review_release() >> published
    if CLEAN_IDLE_HOURS:
        published >> clean_workspaces()


alerts.deadline_left_out_of_test_runs(nih_cxr_release())
