"""The pipeline's stages as functions of JSON-able arguments: what each Airflow task calls.

Each function builds its configuration, calls exactly one stage, and returns a small summary
(URIs and counts, never data), so DAG files stay wiring only and ``cxr run`` shares the code path.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pipeline import options
from pipeline.config import RunConfig
from pipeline.convert import schema
from pipeline.curate import curation as curate
from pipeline.errors import BadDataError, PipelineError, UsageError
from pipeline.ingest import extract, files, rawzone, sources
from pipeline.layers import curation as layer_curation
from pipeline.layers import schema as layer_schema
from pipeline.plan import planning as plan
from pipeline.plan import preview
from pipeline.publish import finish
from pipeline.publish.manifest import manifest_key, read_manifest
from pipeline.review import brief, decision, staging
from pipeline.review.decision import Decision
from pipeline.review.staging import Staged
from pipeline.run import connections
from pipeline.run.isolation import run_in_child
from pipeline.run.memory import release_memory, tune_allocator
from pipeline.store import layout
from pipeline.store.storage import Store
from pipeline.store.tables import get_json

tune_allocator()  # every process that runs a stage imports this module (see pipeline.run.memory)
log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: What a param takes when a run is not given it (from the options table, ``pipeline.options``).
PARAM_DEFAULTS: dict[str, Any] = options.PARAM_DEFAULTS


def new_run_id() -> str:
    """A fresh run id for a run outside Airflow."""
    return "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def config_from_params(
    params: dict[str, Any],
    run_id: str,
    logical_date: str | None = None,
    connection: Mapping[str, Any] | None = None,
    bundle: Mapping[str, str | None] | None = None,
) -> RunConfig:
    """Build a run's configuration from DAG params or CLI options (missing keys take defaults).

    ``connection`` holds the fields (``login``, ``password``, ``extra``) of the store's Airflow
    connection when the DAG found one; without it the ``AWS_*`` environment applies. ``bundle`` names the DAG
    bundle the task runs from (``bundle_name``, ``bundle_version``: :func:`pipeline.provenance.from_airflow_context`).
    """
    merged = {**PARAM_DEFAULTS, **{k: v for k, v in params.items() if v not in (None, "")}}
    unknown = sorted(set(merged) - set(PARAM_DEFAULTS))
    if unknown:
        raise UsageError(
            f"unknown run option(s) {', '.join(map(repr, unknown))}: the options are {', '.join(PARAM_DEFAULTS)}"
        )
    merged["source"] = merged["source"] or os.environ.get("CXR_SOURCE")
    if not merged["source"]:
        raise UsageError("no source given: pass the source location (param 'source' or --source) or set CXR_SOURCE")
    fields = {o.config_field: o.to_field(merged[o.name]) for o in options.config_options() if o.name != "store"}
    layer_ids = layer_schema.parse_annotations(fields["annotations"])  # refused here, before anything runs
    layer_schema.check_layer_ids(layer_ids, schema.column_names())
    return RunConfig(
        **fields,
        store=connections.store_config(merged["store"], connection),
        logical_date=logical_date,
        run_id=run_id,
        bundle_name=(bundle or {}).get("bundle_name"),
        bundle_version=(bundle or {}).get("bundle_version"),
    )


def _store(cfg: RunConfig) -> Store:
    return Store(cfg.store)


def _listing(cfg: RunConfig) -> sources.SourceListing:
    layers = layer_schema.parse_annotations(cfg.annotations)
    return sources.discover(cfg.source, cfg.shards, cfg.data_entry, cfg.checksums, layers)


def discover(cfg: RunConfig) -> list[dict[str, Any]]:
    """Find the source's archives (one dict per archive), make sure the store's bucket exists, and
    record the run's source manifest (metadata files hashed and checked against the md5 list)."""
    store = _store(cfg)
    store.ensure_bucket()
    listing = _listing(cfg)
    rawzone.record_sources(store, listing, cfg.run_id)
    return [shard.to_dict() for shard in listing.shards]


def extract_shard(cfg: RunConfig, shard: dict[str, Any]) -> dict[str, Any]:
    """Extract one archive into the raw zone."""
    return extract.extract_shard(_store(cfg), files.FileRef.from_dict(shard), cfg.upload_workers).to_dict()


def curate_metadata(cfg: RunConfig) -> dict[str, Any]:
    """Load, normalise and validate the metadata files."""
    return curate.curate(_store(cfg), _listing(cfg), cfg.run_id, layer_curation.curate_layers).to_dict()


def plan_release(cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> list[dict[str, Any]]:
    """Join, split, choose the version; return the conversion units (none when the inputs are unchanged).

    The plan itself is kept in the run's workspace, where convert and publish read it.
    """
    return plan.build_plan(_store(cfg), cfg, list(shard_results), curated).units


def _plan(store: Store, cfg: RunConfig) -> plan.Plan:
    return plan.Plan.from_dict(get_json(store, layout.plan_key(cfg.run_id)))


def convert_unit(cfg: RunConfig, unit: dict[str, Any]) -> dict[str, Any]:
    """Convert one unit into its tar shard and Parquet file(s)."""
    from pipeline.convert import units as convert

    store = _store(cfg)
    return convert.convert_unit(store, cfg, _plan(store, cfg), plan.Unit(**unit))


def publish_release(cfg: RunConfig) -> dict[str, Any]:
    """Verify and publish the release, then move ``latest`` (no review: ``cxr run`` without ``--review``)."""
    store = _store(cfg)
    return finish.finish(store, cfg, _plan(store, cfg))


def stage_release(cfg: RunConfig) -> dict[str, Any]:
    """Write and verify every file of the release, keep its manifest back (``runs/<run>/staged.json``).

    Returns the run's summary with ``staged`` (False: the inputs are published already, nothing to review or
    publish), ``review_wanted`` (whether a reviewer decides) and ``brief`` (the reviewer's page, with review on).
    """
    store = _store(cfg)
    staged = finish.stage(store, cfg, _plan(store, cfg))
    if staged.done:
        return {**staged.summary, "staged": False, "review_wanted": False}
    staging.save(store, staged)
    text = brief.brief(staged, timeout_text=decision.duration_words(decision.review_timeout())) if cfg.review else ""
    return {**staged.summary, "staged": True, "review_wanted": cfg.review, "brief": text}


def publish_staged(
    cfg: RunConfig, staged_summary: Mapping[str, Any], review: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Publish what :func:`stage_release` staged; with review on, as the review task's answer (``review``) decides.

    Approved: the manifest (with the decision) is written and ``latest`` moves. Rejected, or no answer in time:
    the staged files and the claim go, the decision is kept in ``raw/runs/<run>/review.json``. A rerun after the
    release was published reports it again.
    """
    if not staged_summary.get("staged"):
        return {key: value for key, value in staged_summary.items() if key not in ("staged", "review_wanted", "brief")}
    store = _store(cfg)
    staged = staging.load(store, cfg.run_id)
    if staged is None:
        return _already_concluded(store, cfg, str(staged_summary["version"]))
    if not cfg.review:
        return finish.publish(store, staged)
    return conclude(store, staged, decision.from_hitl(review or {}))


def conclude(store: Store, staged: Staged, verdict: Decision) -> dict[str, Any]:
    """Carry out a review's decision on a staged release: publish it, or drop it; return the run's summary."""
    if verdict.approved:
        staging.record_decision(store, staged, verdict)
        return finish.publish(store, staged, verdict)
    return staging.reject(store, staged, verdict)


def _already_concluded(store: Store, cfg: RunConfig, version: str) -> dict[str, Any]:
    """What a rerun of the publishing task says once its run's review has been carried out."""
    manifest = read_manifest(store, version)
    if manifest is not None and manifest.get("created_by_run") == cfg.run_id:
        log.info("release %s was published by this run already", version)
        keys = ("version", "counts", "quarantined")
        return {**{k: manifest[k] for k in keys}, "published": True, "manifest": store.uri(manifest_key(version))}
    record = layout.review_key(cfg.run_id)
    if store.exists(record):
        return {"version": version, "published": False, "review": get_json(store, record)}
    raise PipelineError(
        f"run {cfg.run_id} has no staged release {version} to publish: its workspace is gone; rerun the whole run"
    )


def clean_workspaces(cfg: RunConfig, idle_hours: float) -> dict[str, Any]:
    """Remove the store's leftover workspaces idle for ``idle_hours`` (never this run's); return the report."""
    from pipeline.run import cleanup

    store = _store(cfg)
    stale = cleanup.find_stale(store, idle=dt.timedelta(hours=idle_hours), keep_runs=[cfg.run_id])
    return cleanup.remove(store, stale).to_dict()


def plan_or_preview(cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> dict[str, Any]:
    """Plan the release (what the DAG's ``plan_release`` task returns); in a dry run, preview it instead.

    Returns ``version``, ``unchanged``, ``dry_run``, ``counts``, ``quarantined`` and ``units`` (the
    conversion units: none when the inputs are unchanged or in a dry run, which claims nothing).
    """
    if cfg.dry_run:
        seen = preview.preview(_store(cfg), cfg, list(shard_results), curated)
        return {**seen.to_dict(), "units": []}
    made = plan.build_plan(_store(cfg), cfg, list(shard_results), curated)
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


def run_all(
    cfg: RunConfig, decide: Callable[[str], Decision] | None = None, *, isolate: bool = False
) -> dict[str, Any]:
    """Run every stage (``cxr run``); a dry run stops after the plan.

    With review on, ``decide`` gets the reviewer's brief and returns a :class:`pipeline.review.decision.Decision`.
    With ``isolate`` (what ``cxr run`` does) each stage runs in a child process of its own, as Airflow runs each
    task (:mod:`pipeline.run.isolation`), so that the run peaks at its largest stage rather than at what every
    stage left resident; without it, every stage runs in this process, with memory given back between them.
    A review's staging, decision and conclusion run in this process (the decision may ask on this terminal).

    Returns ``publish_release``'s summary: ``version``, ``published``, ``counts``, ``quarantined`` (rows of
    ``quarantine.parquet``), ``quarantined_by_kind`` (images, box rows, split-list rows) and ``not_in_source``
    (Data_Entry rows, boxes and split-list names of images this source does not hold: a subset, not a loss).
    """
    stage = run_in_child if isolate else _here
    shard_results = stage(_extract_all, cfg)
    curated = stage(curate_metadata, cfg)
    planned = stage(plan_or_preview, cfg, shard_results, curated)
    if not should_publish(cfg):
        return {key: value for key, value in planned.items() if key != "units"} | {"published": False}
    stage(_convert_all, cfg, planned["units"])
    if not cfg.review:
        return stage(publish_release, cfg)
    if decide is None:
        raise UsageError("a run with review needs a reviewer: `cxr run --review` asks on the terminal")
    return _review_here(cfg, decide)


def _here(stage: Callable[..., _T], *args: Any) -> _T:
    """Run a stage in this process, then hand its leftovers back to the system (see pipeline.run.memory)."""
    result = stage(*args)
    release_memory()
    return result


def _convert_all(cfg: RunConfig, units: list[dict[str, Any]]) -> None:
    """Convert every unit of the plan, one after the other, giving memory back after each; then stop the decoding
    workers and drop the upload part buffers the units shared."""
    from pipeline.convert import pool
    from pipeline.store.multipart import PARTS

    try:
        for unit in units:
            convert_unit(cfg, unit)
            release_memory()
    finally:
        pool.shutdown_workers()
        PARTS.clear()


def _review_here(cfg: RunConfig, decide: Callable[[str], Decision]) -> dict[str, Any]:
    """Stage the release, let ``decide`` (the terminal, or ``--approve``) judge it, and carry out the decision."""
    store = _store(cfg)
    staged = finish.stage(store, cfg, _plan(store, cfg))
    if staged.done:
        return staged.summary
    staging.save(store, staged)
    return conclude(store, staged, decide(brief.brief(staged)))
