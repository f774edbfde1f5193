"""Finish a release: the files beside the data, the manifest, verification, and the pointer.

Called once all conversion units of a run are done. Writes ``metadata.parquet`` (no pixels),
``quarantine.parquet``, ``validation/results.json``, a wids index per split, then re-reads every file,
writes ``manifest.json`` last and moves ``releases/latest.json``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pandas as pd
import pyarrow as pa

import pipeline
from pipeline import nih, publish
from pipeline.config import RunConfig
from pipeline.convert import metadata_schema, release_schema, to_record
from pipeline.errors import PipelineError
from pipeline.plan import Plan, Unit
from pipeline.split import SPLITS
from pipeline.storage import Store
from pipeline.workspace import get_frame, get_json, put_json, records, release_prefix, run_prefix, table_bytes

log = logging.getLogger(__name__)


def _unit_results(store: Store, plan: Plan) -> list[dict[str, Any]]:
    prefix = run_prefix(plan.run_id)
    results = []
    for unit in (Unit(**u) for u in plan.units):
        key = f"{prefix}/units/{unit.name}.json"
        if not store.exists(key):
            raise PipelineError(f"unit {unit.name} of run {plan.run_id} has not been converted; re-run convert")
        results.append(get_json(store, key))
    return results


def _put_file(store: Store, rel: str, body: bytes, rows: int, kind: str) -> dict[str, Any]:
    sha = store.put_bytes(rel, body)
    return {
        "path": rel,
        "size": len(body),
        "sha256": sha,
        "md5": hashlib.md5(body, usedforsecurity=False).hexdigest(),
        "rows": rows,
        "kind": kind,
    }


def metadata_table(store: Store, plan: Plan, results: list[dict[str, Any]]) -> pa.Table:
    """The release's rows without pixels, sorted by split then image index."""
    frame = get_frame(store, f"{run_prefix(plan.run_id)}/plan.parquet").drop(columns=["sha256"])
    digests = pd.DataFrame([d for r in results for d in r["digests"]])
    frame = frame.merge(digests, on="image_index", how="inner")
    rows = [{**to_record(row, b"", bool(row["converted"])), "sha256": row["sha256"]} for row in records(frame)]
    rows.sort(key=lambda r: (SPLITS.index(r["split"]), r["image_index"]))
    return pa.Table.from_pylist(rows, schema=metadata_schema())


def wids_index(version: str, split: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """A wids-style shard index for one split (URLs relative to the index file)."""
    shards = [
        f
        for f in files
        if f["kind"] == "wds" and f["path"].startswith(f"{release_prefix(version)}/webdataset/{split}/")
    ]
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": f"{split}",
        "shardlist": [
            {"url": f["path"].rsplit("/", 1)[1], "md5sum": f["md5"], "nsamples": f["rows"], "filesize": f["size"]}
            for f in sorted(shards, key=lambda f: f["path"])
        ],
    }


def build_manifest(cfg: RunConfig, plan: Plan, files: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """Everything a consumer needs to trust and read the release."""
    return {
        "version": plan.version,
        "input_fingerprint": plan.fingerprint,
        "pipeline_version": pipeline.__version__,
        "created_by_run": plan.run_id,
        "split_mode": plan.split_mode,
        "counts": plan.counts,
        "images": sum(plan.counts.values()),
        "quarantined": plan.quarantined,
        "labels": list(nih.LABELS),
        "label_vector_order": [*nih.FINDINGS, nih.NO_FINDING],
        "schema": {f.name: str(f.type) for f in release_schema()},
        "config": {
            "split_mode": cfg.split_mode,
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "test_fraction": cfg.test_fraction,
            "shard_target_bytes": cfg.shard_target_bytes,
        },
        "sources": plan.sources,
        "files": sorted(files, key=lambda f: f["path"]),
        **extra,
    }


def _point_latest_if_behind(store: Store, plan: Plan) -> None:
    """Finish a run that crashed after its manifest was written but before ``latest`` moved."""
    latest = publish.read_latest(store)
    if latest is None or latest.get("version") != plan.version:
        body = store.get_bytes(publish.manifest_key(plan.version))
        publish.move_latest(store, plan.version, hashlib.sha256(body).hexdigest(), plan.fingerprint)


def finish(store: Store, cfg: RunConfig, plan: Plan) -> dict[str, Any]:
    """Write the release's side files, verify everything, write the manifest, move ``latest``.

    Returns a small summary (version, counts, manifest URI).
    """
    existing = publish.read_manifest(store, plan.version)
    if plan.unchanged or (existing and existing.get("input_fingerprint") == plan.fingerprint):
        log.info("inputs unchanged: release %s already holds them; nothing new published", plan.version)
        _point_latest_if_behind(store, plan)
        store.delete_prefix(run_prefix(plan.run_id) + "/")
        return {"version": plan.version, "published": False, "counts": plan.counts, "quarantined": plan.quarantined}
    release, prefix = release_prefix(plan.version), run_prefix(plan.run_id)
    results = _unit_results(store, plan)
    files = [f for r in results for f in r["files"]]
    meta = metadata_table(store, plan, results)
    files.append(_put_file(store, f"{release}/metadata.parquet", table_bytes(meta), meta.num_rows, "parquet"))
    quarantine = store.get_bytes(f"{prefix}/quarantine.parquet")
    files.append(_put_file(store, f"{release}/quarantine.parquet", quarantine, plan.quarantined, "parquet"))
    for item in store.list(f"{prefix}/validation/"):
        name = item.key.removeprefix(f"{prefix}/validation/")
        body = store.get_bytes(item.key)
        files.append(_put_file(store, f"{release}/validation/{name}", body, 0, name.rsplit(".", 1)[-1]))
    for split in SPLITS:
        index = wids_index(plan.version, split, files)
        sha = put_json(store, f"{release}/webdataset/{split}/index.json", index)
        body = store.get_bytes(f"{release}/webdataset/{split}/index.json")
        files.append(
            {
                "path": f"{release}/webdataset/{split}/index.json",
                "size": len(body),
                "sha256": sha,
                "md5": hashlib.md5(body, usedforsecurity=False).hexdigest(),
                "rows": len(index["shardlist"]),
                "kind": "json",
            }
        )
    problems = publish.verify_files(store, files)
    if problems:
        raise PipelineError(f"release {plan.version} failed verification: " + "; ".join(problems))
    for f in files:
        f["path"] = f["path"].removeprefix(release + "/")
    manifest = build_manifest(cfg, plan, files, {"parent": (publish.read_latest(store) or {}).get("version")})
    manifest_sha = publish.write_manifest(store, plan.version, manifest)
    publish.move_latest(store, plan.version, manifest_sha, plan.fingerprint)
    store.delete(f"{release}/_claim.json")
    store.delete_prefix(prefix + "/")
    log.info("published release %s: %s", plan.version, plan.counts)
    return {
        "version": plan.version,
        "published": True,
        "counts": plan.counts,
        "quarantined": plan.quarantined,
        "manifest": store.uri(publish.manifest_key(plan.version)),
    }


def plan_units(plan: Plan) -> list[Unit]:
    """The plan's units as objects."""
    return [Unit(**u) for u in plan.units]
