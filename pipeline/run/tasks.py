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

from pipeline import options
from pipeline.config import RunConfig
from pipeline.convert import schema
from pipeline.curate import curation as curate
from pipeline.errors import BadDataError, UsageError
from pipeline.ingest import extract, files, rawzone, sources
from pipeline.layers import curation as layer_curation
from pipeline.layers import schema as layer_schema
from pipeline.plan import planning as plan
from pipeline.plan import preview
from pipeline.publish import finish
from pipeline.run import connections
from pipeline.run.memory import release_memory
from pipeline.store import layout
from pipeline.store.storage import Store
from pipeline.store.tables import get_json

log = logging.getLogger(__name__)

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
) -> RunConfig:
    """Build a run's configuration from DAG params or CLI options (missing keys take defaults).

    ``connection`` holds the fields (``login``, ``password``, ``extra``) of the store's Airflow
    connection when the DAG found one; without it the ``AWS_*`` environment applies.
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
    """Verify and publish the release, then move ``latest``."""
    store = _store(cfg)
    return finish.finish(store, cfg, _plan(store, cfg))


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


def run_all(cfg: RunConfig) -> dict[str, Any]:
    """Run every stage in this process (``cxr run``); a dry run stops after the plan.

    Returns ``publish_release``'s summary: ``version``, ``published``, ``counts``, ``quarantined`` (rows of
    ``quarantine.parquet``), ``quarantined_by_kind`` (images, box rows, split-list rows) and ``not_in_source``
    (Data_Entry rows, boxes and split-list names of images this source does not hold: a subset, not a loss).
    """
    shard_results = _extract_all(cfg)
    release_memory()  # each stage's leftovers go back to the system before the next (see pipeline.run.memory)
    curated = curate_metadata(cfg)
    release_memory()
    planned = plan_or_preview(cfg, shard_results, curated)
    release_memory()
    if not should_publish(cfg):
        return {key: value for key, value in planned.items() if key != "units"} | {"published": False}
    for unit in planned["units"]:
        convert_unit(cfg, unit)
        release_memory()
    return publish_release(cfg)
