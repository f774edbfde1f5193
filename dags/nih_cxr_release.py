"""
### NIH ChestX-ray14 release

Turns the NIH ChestX-ray14 archives and metadata CSVs in a source location into a versioned,
validated, ML-ready release on S3-compatible object storage:

`discover` → `extract_shard` (one mapped task per image archive) → `curate_metadata`
(normalise + Great Expectations) → `plan_release` (patient-level splits, version, units) →
`convert_unit` (mapped: Parquet + WebDataset) → `publish_release` (manifest last, then `latest`).

**Params**: `source` (directory; default `$CXR_SOURCE`), `store` (`s3://bucket/prefix`; default
`$CXR_STORE`), `release` (version override; default the logical date `YYYY.MM.DD`), `split_mode`,
`seed`, `shards` (subset), `variant_size` (downsized copy, 0 = none), `force`.
Credentials come from the environment (`AWS_*`), never from params.

Bad data fails at once without retries; an unreachable store is retried with back-off.
Unchanged inputs publish nothing new.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 3,
    "retry_delay": dt.timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
    "execution_timeout": dt.timedelta(hours=3),
}


def _run(stage: str, *args: Any) -> Any:
    """Call one `pipeline.tasks` function with the run's config; bad data fails without retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline import tasks
    from pipeline.errors import PipelineError

    ctx = get_current_context()
    logical = ctx.get("logical_date") or ctx["dag_run"].run_after
    try:
        cfg = tasks.config_from_params(dict(ctx["params"]), ctx["run_id"], logical.isoformat() if logical else None)
        return getattr(tasks, stage)(cfg, *args)
    except PipelineError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        raise AirflowFailException(f"bad parameters or data: {exc}") from exc


@task
def discover() -> list[dict[str, Any]]:
    """Find the image archives in the source; one mapped extract task follows per archive."""
    return list(_run("discover"))


@task(max_active_tis_per_dagrun=2)
def extract_shard(shard: dict[str, Any]) -> dict[str, Any]:
    """Stream one archive into the raw zone (skipped when unchanged)."""
    return dict(_run("extract_shard", shard))


@task
def curate_metadata() -> dict[str, Any]:
    """Normalise and validate the metadata; blocking failures stop the run here."""
    return dict(_run("curate_metadata"))


@task
def plan_release(shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> list[dict[str, Any]]:
    """Assign patient-level splits, choose the version, cut the work into units (none if unchanged)."""
    return list(_run("plan_release", list(shard_results), curated))


@task(max_active_tis_per_dagrun=2)
def convert_unit(unit: dict[str, Any]) -> dict[str, Any]:
    """Write one WebDataset shard and its Parquet part."""
    return dict(_run("convert_unit", unit))


@task(trigger_rule=TriggerRule.NONE_FAILED)
def publish_release() -> dict[str, Any]:
    """Verify every file, write the manifest last, move `latest`."""
    return dict(_run("publish_release"))


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["nih-cxr", "release"],
    params={
        "source": Param(None, type=["null", "string"], description="Source directory (default $CXR_SOURCE)"),
        "store": Param(None, type=["null", "string"], description="s3://bucket/prefix (default $CXR_STORE)"),
        "release": Param(None, type=["null", "string"], description="Release version (default YYYY.MM.DD)"),
        "split_mode": Param("auto", enum=["auto", "official", "patient-hash"], description="How to split"),
        "seed": Param(0, type="integer", minimum=0, description="Seed of the patient hash"),
        "shards": Param(None, type=["null", "array"], description="Only these archives (names or numbers)"),
        "variant_size": Param(
            256, type="integer", minimum=0, maximum=1024, description="Long side of the downsized PNG (0 = none)"
        ),
        "force": Param(False, type="boolean", description="Rebuild even when the inputs are unchanged"),
    },
)
def nih_cxr_release() -> None:
    shards = discover()
    curated = curate_metadata()
    shards >> curated  # discover also makes sure the bucket exists
    units = plan_release(extract_shard.expand(shard=shards), curated)
    convert_unit.expand(unit=units) >> publish_release()


nih_cxr_release()
