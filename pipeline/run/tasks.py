"""The pipeline's stages as functions of JSON-able arguments: what each Airflow task calls.

Each function builds its configuration, calls exactly one stage, and returns a small summary
(URIs and counts, never data), so DAG files stay wiring only and ``cxr run`` shares the code path.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.config import RunConfig
from pipeline.curate import curation as curate
from pipeline.errors import BadDataError
from pipeline.ingest import extract, sources
from pipeline.plan import crosscheck, preview
from pipeline.plan import planning as plan
from pipeline.publish import finish as release
from pipeline.run import connections
from pipeline.store.storage import Store
from pipeline.store.workspace import get_json, run_prefix

log = logging.getLogger(__name__)

PARAM_DEFAULTS: dict[str, Any] = {
    "source": None,
    "store": None,
    "release": None,
    "split_mode": "auto",
    "seed": 0,
    "val_fraction": 0.1,
    "variant_size": 256,
    "shard_size_mb": 1024,
    "test_fraction": 0.2,
    "shards": None,
    "force": False,
    "dry_run": False,
    "store_conn_id": None,
    "data_entry": None,
    "checksums": None,
}


def new_run_id() -> str:
    """A fresh run id for a run outside Airflow."""
    return "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def config_from_params(
    params: dict[str, Any],
    run_id: str,
    logical_date: str | None = None,
    connection: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build a run's configuration from DAG params or CLI options (missing keys take defaults).

    ``connection`` holds the fields (``login``, ``password``, ``extra``) of the store's Airflow
    connection when the DAG found one; without it the ``AWS_*`` environment applies.
    """
    merged = {**PARAM_DEFAULTS, **{k: v for k, v in params.items() if v not in (None, "")}}
    merged["source"] = merged["source"] or os.environ.get("CXR_SOURCE")
    if not merged["source"]:
        raise ValueError("no source given: pass the source location (param 'source' or --source)")
    shards = merged["shards"]
    return RunConfig(
        source=str(merged["source"]),
        store=connections.store_config(merged["store"], connection),
        release=merged["release"],
        logical_date=logical_date,
        split_mode=merged["split_mode"],
        seed=int(merged["seed"]),
        val_fraction=float(merged["val_fraction"]),
        test_fraction=float(merged["test_fraction"]),
        shards=tuple(str(s) for s in shards) if shards else None,
        force=bool(merged["force"]),
        data_entry=merged["data_entry"],
        checksums=merged["checksums"],
        dry_run=bool(merged["dry_run"]),
        variant_size=int(merged["variant_size"]) or None,
        shard_target_bytes=int(merged["shard_size_mb"]) << 20,
        run_id=run_id,
    )


def _store(cfg: RunConfig) -> Store:
    return Store(cfg.store)


def _listing(cfg: RunConfig) -> sources.SourceListing:
    return sources.discover(cfg.source, cfg.shards, cfg.data_entry, cfg.checksums)


def discover(cfg: RunConfig) -> list[dict[str, Any]]:
    """Find the source's archives (one dict per archive), make sure the store's bucket exists, and
    record the run's source manifest (metadata files hashed and checked against the md5 list)."""
    store = _store(cfg)
    store.ensure_bucket()
    listing = _listing(cfg)
    extract.record_sources(store, listing, cfg.run_id)
    return [shard.to_dict() for shard in listing.shards]


def extract_shard(cfg: RunConfig, shard: dict[str, Any]) -> dict[str, Any]:
    """Extract one archive into the raw zone."""
    return extract.extract_shard(_store(cfg), sources.FileRef.from_dict(shard), cfg.upload_workers).to_dict()


def curate_metadata(cfg: RunConfig) -> dict[str, Any]:
    """Load, normalise and validate the metadata files."""
    return curate.curate(_store(cfg), _listing(cfg), cfg.run_id).to_dict()


def plan_release(cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> list[dict[str, Any]]:
    """Join, split, choose the version; return the conversion units (none when the inputs are unchanged).

    The plan itself is kept in the run's workspace, where convert and publish read it.
    """
    return plan.plan_release(_store(cfg), cfg, list(shard_results), curated).units


def _plan(store: Store, cfg: RunConfig) -> plan.Plan:
    return plan.Plan.from_dict(get_json(store, f"{run_prefix(cfg.run_id)}/plan.json"))


def convert_unit(cfg: RunConfig, unit: dict[str, Any]) -> dict[str, Any]:
    """Convert one unit into its tar shard and Parquet file(s)."""
    from pipeline.convert import units as convert

    store = _store(cfg)
    return convert.convert_unit(store, cfg, _plan(store, cfg), plan.Unit(**unit))


def publish_release(cfg: RunConfig) -> dict[str, Any]:
    """Verify and publish the release, then move ``latest``."""
    store = _store(cfg)
    return release.finish(store, cfg, _plan(store, cfg))


def plan_or_preview(cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> dict[str, Any]:
    """Plan the release (what the DAG's ``plan_release`` task returns); in a dry run, preview it instead.

    Returns ``version``, ``unchanged``, ``dry_run``, ``counts``, ``quarantined`` and ``units`` (the
    conversion units: none when the inputs are unchanged or in a dry run, which claims nothing).
    """
    if cfg.dry_run:
        seen = preview.preview(_store(cfg), cfg, list(shard_results), curated)
        return {**seen.to_dict(), "units": []}
    made = plan.plan_release(_store(cfg), cfg, list(shard_results), curated)
    keys = ("version", "unchanged", "counts", "quarantined", "units")
    return {**{key: getattr(made, key) for key in keys}, "dry_run": False}


def should_publish(cfg: RunConfig) -> bool:
    """Whether convert and publish run: False in a dry run (the DAG then skips them)."""
    if cfg.dry_run:
        log.info("dry run: convert and publish are skipped; nothing is claimed or published")
    return not cfg.dry_run


def _extract_all(cfg: RunConfig) -> list[dict[str, Any]]:
    """Extract every shard; a bad archive does not stop the others (as mapped Airflow tasks behave)."""
    results, failures = [], []
    for shard in discover(cfg):
        try:
            results.append(extract_shard(cfg, shard))
        except BadDataError as exc:
            log.error("%s", exc)
            failures.append(str(exc))
    if failures:
        raise BadDataError(f"{len(failures)} archive(s) could not be extracted: " + "; ".join(failures))
    return results


def run_all(cfg: RunConfig) -> dict[str, Any]:
    """Run every stage in this process (``cxr run``); a dry run stops after the plan.

    Returns ``publish_release``'s summary: ``version``, ``published``, ``counts``, ``quarantined`` (rows of
    ``quarantine.parquet``), ``quarantined_by_kind`` (images, box rows, split-list rows) and ``not_in_source``
    (Data_Entry rows, boxes and split-list names of images this source does not hold: a subset, not a loss).
    """
    shard_results = _extract_all(cfg)
    curated = curate_metadata(cfg)
    planned = plan_or_preview(cfg, shard_results, curated)
    if not should_publish(cfg):
        return {key: value for key, value in planned.items() if key != "units"} | {"published": False}
    for unit in planned["units"]:
        convert_unit(cfg, unit)
    return publish_release(cfg)


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{split} {count}" for split, count in counts.items()) or "no images"


def outcome_text(outcome: Mapping[str, Any]) -> str:
    """One sentence on what a finished run published, from ``publish_release``'s (or a dry run's plan) summary."""
    lost = f"{outcome.get('quarantined', 0)} quarantined"
    if "quarantined_by_kind" in outcome:  # what was lost, apart from what this source does not hold
        lost = crosscheck.accounting_text(outcome)
    counts = f"({_counts_text(outcome.get('counts', {}))}; {lost})"
    version = outcome.get("version", "?")
    if outcome.get("dry_run"):
        verb = "would keep the unchanged" if outcome.get("unchanged") else "would publish"
        return f"dry run: {verb} release {version} {counts}; nothing was claimed or published."
    if outcome.get("published"):
        return f"published release {version} {counts} at {outcome.get('manifest', '?')}."
    return f"inputs unchanged: release {version} already holds them {counts}; nothing new was published."


def failure_text(failure: Mapping[str, Any]) -> str:
    """One sentence on where and why a run failed, with what to do next."""
    where = str(failure.get("task") or "an unknown task")
    if failure.get("map_index", -1) not in (-1, None):
        where += f"[{failure['map_index']}]"
    reason = str(failure.get("reason") or "see the task's log")
    attempt = f" on try {failure['try_number']}" if failure.get("try_number") else ""
    return f"failed at task {where}{attempt}: {reason}."


def run_summary(dag_id: str, run_id: str, outcome: Mapping[str, Any] | None, failure: Mapping[str, Any] | None) -> str:
    """The one-paragraph summary the DAG's callbacks log at the end of every run."""
    head = f"{dag_id} run {run_id}"
    if failure is not None:
        return f"{head} {failure_text(failure)} Its log says more; a fixed input or parameter needs a new run."
    if outcome is None:
        return f"{head} succeeded, but left no summary (was publish skipped?)."
    return f"{head} succeeded: {outcome_text(outcome)}"


def release_event_text(uri: str, extra: Mapping[str, Any]) -> str:
    """What the example consumer DAG logs for each release it was triggered by."""
    counts = _counts_text(extra.get("counts", {}))
    return (
        f"release {extra.get('version', '?')} is ready at {uri}: {counts} images, "
        f"{extra.get('quarantined', 0)} quarantined"
    )
