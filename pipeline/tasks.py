"""The pipeline's stages as functions of JSON-able arguments: what each Airflow task calls.

Each function builds its configuration, calls exactly one stage, and returns a small summary
(URIs and counts, never data), so DAG files stay wiring only and ``cxr run`` shares the code path.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from typing import Any

from pipeline import curate, extract, plan, release, sources
from pipeline.config import RunConfig, StoreConfig
from pipeline.storage import Store
from pipeline.workspace import get_json, run_prefix

log = logging.getLogger(__name__)

PARAM_DEFAULTS: dict[str, Any] = {
    "source": None,
    "store": None,
    "release": None,
    "split_mode": "auto",
    "seed": 0,
    "val_fraction": 0.1,
    "variant_size": 256,
    "test_fraction": 0.2,
    "shards": None,
    "force": False,
}


def new_run_id() -> str:
    """A fresh run id for a run outside Airflow."""
    return "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def config_from_params(params: dict[str, Any], run_id: str, logical_date: str | None = None) -> RunConfig:
    """Build a run's configuration from DAG params or CLI options (missing keys take defaults)."""
    merged = {**PARAM_DEFAULTS, **{k: v for k, v in params.items() if v not in (None, "")}}
    merged["source"] = merged["source"] or os.environ.get("CXR_SOURCE")
    if not merged["source"]:
        raise ValueError("no source given: pass the source location (param 'source' or --source)")
    shards = merged["shards"]
    return RunConfig(
        source=str(merged["source"]),
        store=StoreConfig.from_env(merged["store"]),
        release=merged["release"],
        logical_date=logical_date,
        split_mode=merged["split_mode"],
        seed=int(merged["seed"]),
        val_fraction=float(merged["val_fraction"]),
        test_fraction=float(merged["test_fraction"]),
        shards=tuple(str(s) for s in shards) if shards else None,
        force=bool(merged["force"]),
        variant_size=int(merged["variant_size"]) or None,
        run_id=run_id,
    )


def _store(cfg: RunConfig) -> Store:
    return Store(cfg.store)


def _listing(cfg: RunConfig) -> sources.SourceListing:
    return sources.discover(cfg.source, cfg.shards)


def discover(cfg: RunConfig) -> list[dict[str, Any]]:
    """Find the source's archives (one dict per archive) and make sure the store's bucket exists."""
    _store(cfg).ensure_bucket()
    return [shard.to_dict() for shard in _listing(cfg).shards]


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
    from pipeline import convert

    store = _store(cfg)
    return convert.convert_unit(store, cfg, _plan(store, cfg), plan.Unit(**unit))


def publish_release(cfg: RunConfig) -> dict[str, Any]:
    """Verify and publish the release, then move ``latest``."""
    store = _store(cfg)
    return release.finish(store, cfg, _plan(store, cfg))


def run_all(cfg: RunConfig) -> dict[str, Any]:
    """Run every stage in this process (``cxr run``)."""
    shard_results = [extract_shard(cfg, shard) for shard in discover(cfg)]
    curated = curate_metadata(cfg)
    for unit in plan_release(cfg, shard_results, curated):
        convert_unit(cfg, unit)
    return publish_release(cfg)
