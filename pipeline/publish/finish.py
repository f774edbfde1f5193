"""The publish stage's entry point: :func:`finish` turns a run's converted units into a published release.

The ``publish_release`` task calls :func:`finish` once all conversion units of a run are done. Images that
conversion found undecodable (listed in the unit results) join the plan's quarantine here, with the boxes of
those images, and leave the counts, so the release, its card, its manifest and its accounting all tell the
same story (``metadata.parquet``'s ``patient_order`` counts the published images only; the manifest's
``image_bytes`` sums the units' full and small PNGs per split). Writes ``metadata.parquet`` (no pixels),
``quarantine.parquet``, ``validation/``, a wids index per split, the dataset card (``README.md`` and
``card/*.png``) and ``croissant.json``; then checks every file in the store, writes ``manifest.json``
last (a conditional create: the moment the release becomes visible) and moves ``releases/latest.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections import Counter
from typing import Any

import pandas as pd
import pyarrow as pa

import pipeline
from pipeline import faults, nih
from pipeline.config import RunConfig
from pipeline.convert import units as convert_units
from pipeline.convert.pool import CONVERT_QUARANTINE_REASONS, UNDECODABLE
from pipeline.convert.schema import metadata_schema, to_record
from pipeline.errors import PipelineError, VerifyError
from pipeline.layers import compare
from pipeline.layers import release as layer_release
from pipeline.layers.schema import Layer
from pipeline.plan import annotations as plan_layers
from pipeline.plan.crosscheck import QUARANTINE_COLUMNS, QUARANTINE_REASONS, accounting_summary
from pipeline.plan.planning import Plan, Unit, patient_order
from pipeline.plan.split import SPLITS
from pipeline.plan.stats import split_statistics
from pipeline.plan.versions import release_claim
from pipeline.publish import accounting, card, croissant, diff
from pipeline.publish.card import CardFacts
from pipeline.publish.latest import move_latest, point_latest_if_behind
from pipeline.publish.listing import parent_of
from pipeline.publish.manifest import build_manifest, manifest_key, read_manifest, wids_index, write_manifest
from pipeline.publish.verify import verify_uploads
from pipeline.review.decision import Decision
from pipeline.review.staging import Staged
from pipeline.store import layout
from pipeline.store.layout import release_prefix, run_prefix
from pipeline.store.storage import Store
from pipeline.store.tables import get_frame, get_json, records, table_bytes

log = logging.getLogger(__name__)

#: Rows turned into Python records at a time when the metadata table is built (the rest stays columnar).
RECORD_BATCH = 4096
CONTENT_TYPES = {"md": "text/markdown; charset=utf-8", "png": "image/png", "json": "application/json"}


def _unit_results(store: Store, plan: Plan) -> tuple[list[dict[str, Any]], pa.Table]:
    """Every unit's result, its per-image digests taken out into one table (no Python object per image kept)."""
    results, digests = [], []
    for unit in (Unit(**u) for u in plan.units):
        key = layout.unit_key(plan.run_id, unit.name)
        if not store.exists(key):
            raise PipelineError(f"unit {unit.name} of run {plan.run_id} has not been converted; re-run convert")
        result = get_json(store, key)
        digests.append(convert_units.digest_table(result.pop("digests")))
        results.append(result)
    return results, pa.concat_tables(digests) if digests else convert_units.DIGEST_SCHEMA.empty_table()


@dataclasses.dataclass(frozen=True)
class Quarantine:
    """A run's whole quarantine: the plan's rows and those conversion added (``QUARANTINE_COLUMNS``)."""

    frame: pd.DataFrame
    added: int  # rows added at conversion (0: the plan's quarantine.parquet is published as it is)


def _box_rows(store: Store, plan: Plan, names: set[str]) -> pd.DataFrame:
    """Quarantine rows for the boxes of images quarantined at conversion (as the plan words its own)."""
    boxes = get_frame(store, f"{run_prefix(plan.run_id)}/bboxes.parquet")
    if not names or not len(boxes):
        return pd.DataFrame(columns=list(QUARANTINE_COLUMNS))
    held = boxes[boxes["image_index"].isin(names)]
    line = "line " + held["line"].astype("Int64").astype("str") if "line" in held else ""
    return pd.DataFrame(
        {
            "source": nih.BBOX_LIST,
            "member": line,
            "image_index": held["image_index"].astype("str"),
            "reason": QUARANTINE_REASONS["bbox_image_quarantined"] + " (" + held["label"].astype("str") + ")",
            "reason_code": "bbox_image_quarantined",
        },
        index=held.index,
    )


def merge_convert_quarantine(store: Store, plan: Plan, results: list[dict[str, Any]]) -> tuple[Plan, Quarantine]:
    """Add the images conversion quarantined (and their boxes) to the plan's quarantine; take them out of the counts.

    Returns the plan as published (counts, ``quarantined`` and ``quarantine_reasons`` adjusted; every reason code,
    ``undecodable_image`` included, is a key) and the whole quarantine. Computed from the unit results each time,
    so a rerun of this stage after a crash merges nothing twice.
    """
    planned = get_frame(store, layout.quarantine_key(plan.run_id))
    images = [row for result in results for row in result.get("quarantine", [])]
    per_split = Counter(str(result["split"]) for result in results for _ in result.get("quarantine", []))
    names = {str(row["image_index"]) for row in images}
    boxes = _box_rows(store, plan, names)
    layer_rows = _layer_rows(store, plan, names)
    added = pd.DataFrame(images, columns=list(QUARANTINE_COLUMNS))
    parts = [frame for frame in (planned, added, boxes, layer_rows) if len(frame)]
    frame = pd.concat(parts, ignore_index=True)[list(QUARANTINE_COLUMNS)].astype("str") if parts else planned
    reasons = {**plan.quarantine_reasons, UNDECODABLE: len(images)}
    if len(boxes):
        reasons["bbox_image_quarantined"] = reasons.get("bbox_image_quarantined", 0) + len(boxes)
    if len(layer_rows):
        reasons["layer_row_image_quarantined"] = reasons.get("layer_row_image_quarantined", 0) + len(layer_rows)
    published = dataclasses.replace(
        plan,
        counts={split: n - per_split.get(split, 0) for split, n in plan.counts.items()},
        quarantined=plan.quarantined + len(images) + len(boxes) + len(layer_rows),
        quarantine_reasons=reasons,
    )
    if images:
        log.warning(
            "release %s: %d image(s) could not be decoded and are quarantined (with %d box(es)): %s",
            plan.version,
            len(images),
            len(boxes),
            ", ".join(f"{row['image_index']} ({row['source']})" for row in images[:10]),
        )
    return published, Quarantine(frame, len(images) + len(boxes) + len(layer_rows))


def _layer_rows(store: Store, plan: Plan, names: set[str]) -> pd.DataFrame:
    """Quarantine rows for the annotation-layer rows of images quarantined at conversion."""
    parts = [
        plan_layers.quarantine_rows(layer, table[table["image_index"].isin(names)], "layer_row_image_quarantined")
        for layer, table in (plan_layers.load_layers(store, run_prefix(plan.run_id)) if names else [])
    ]
    parts = [part for part in parts if len(part)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(QUARANTINE_COLUMNS))


def _put_file(store: Store, rel: str, body: bytes, rows: int, kind: str) -> dict[str, Any]:
    sha = store.put_bytes(rel, body, content_type=CONTENT_TYPES.get(kind))
    return {
        "path": rel,
        "size": len(body),
        "sha256": sha,
        "md5": hashlib.md5(body, usedforsecurity=False).hexdigest(),
        "rows": rows,
        "kind": kind,
    }


def metadata_table(store: Store, plan: Plan, digests: pa.Table) -> pa.Table:
    """The release's rows (the images of ``digests``) without pixels, sorted by split then image index."""
    frame = get_frame(store, layout.plan_table_key(plan.run_id)).drop(columns=["sha256"])
    frame = _published_order(frame.merge(digests.to_pandas(), on="image_index", how="inner"))
    order = frame["split"].map(SPLITS.index)
    frame = frame.assign(_order=order).sort_values(["_order", "image_index"], kind="stable").drop(columns="_order")
    layers = plan.annotation_layers()
    schema = metadata_schema(layers)
    parts = [  # a few thousand rows at a time become Python records; the rest stays columnar
        pa.Table.from_pylist([to_record(r, r["sha256"], bool(r["converted"]), layers) for r in records(chunk)], schema)
        for chunk in (frame.iloc[start : start + RECORD_BATCH] for start in range(0, len(frame), RECORD_BATCH))
    ]
    return pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()


def _published_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The published rows with ``patient_order`` counted over them (the plan's counted the images quarantined at
    conversion too; those images' patients keep the plan's order in their Parquet rows and tar samples)."""
    published = patient_order(frame)
    if moved := int((published != frame["patient_order"]).sum()):
        log.warning("patient_order of %d image(s) differs from their Parquet rows' (an image quarantined)", moved)
    return frame.assign(patient_order=published)


def _optional_json(store: Store, rel: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(store, rel) if store.exists(rel) else {}
    return found


def _data_side_files(
    store: Store, plan: Plan, results: list[dict[str, Any]], digests: pa.Table, quarantine: Quarantine
) -> tuple[list[dict[str, Any]], pa.Table, list[tuple[Layer, pa.Table]]]:
    """Write metadata.parquet, quarantine.parquet, validation/, each layer's table and the wids indexes; return
    their entries, the metadata table and each layer's published table."""
    release, prefix = release_prefix(plan.version), run_prefix(plan.run_id)
    files = [f for r in results for f in r["files"]]
    meta = metadata_table(store, plan, digests)
    files.append(_put_file(store, f"{release}/metadata.parquet", table_bytes(meta), meta.num_rows, "parquet"))
    if quarantine.added:
        body = table_bytes(pa.Table.from_pandas(quarantine.frame, preserve_index=False))
    else:
        body = store.get_bytes(layout.quarantine_key(plan.run_id))
    files.append(_put_file(store, f"{release}/quarantine.parquet", body, plan.quarantined, "parquet"))
    for item in store.list(f"{prefix}/validation/"):
        name = item.key.removeprefix(f"{prefix}/validation/")
        body = store.get_bytes(item.key)
        files.append(_put_file(store, f"{release}/validation/{name}", body, 0, name.rsplit(".", 1)[-1]))
    published = set(meta.column("image_index").to_pylist())
    layer_tables = []
    for layer, table in plan_layers.load_layers(store, prefix):
        layer_tables.append((layer, layer_release.layer_table(layer, table, published)))
        rel = f"{release}/{layer_release.table_path(layer.id)}"
        files.append(_put_file(store, rel, table_bytes(layer_tables[-1][1]), layer_tables[-1][1].num_rows, "parquet"))
    for split in SPLITS:
        index = wids_index(plan.version, split, files)
        body = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
        files.append(
            _put_file(store, f"{release}/webdataset/{split}/index.json", body, len(index["shardlist"]), "json")
        )
    for f in files:
        if f["kind"] == "wds":
            f["samples"] = f["rows"]
    return files, meta, layer_tables


def _card_facts(
    store: Store, cfg: RunConfig, plan: Plan, meta: pd.DataFrame, parent: str | None, *, quarantine: pd.DataFrame
) -> CardFacts:
    layers = plan.annotation_layers()
    prefix = run_prefix(plan.run_id)
    validation = card.validation_summary(_optional_json(store, f"{prefix}/validation/results.json"))
    notes = _optional_json(store, f"{prefix}/metadata_notes.json").get("notes", {})
    reasons = _quarantine_reasons(quarantine)
    changes = None
    if parent is not None:
        parent_manifest = read_manifest(store, parent) or {}
        own = {"split_mode": plan.split_mode, "config": _split_config(cfg), "sources": plan.sources}
        same = diff.split_settings(parent_manifest) == diff.split_settings(own)
        columns = diff.DIFF_COLUMNS + [layer.id for layer in layers]
        new_table = pa.Table.from_pandas(meta[columns], preserve_index=False)
        old_table = diff.read_metadata(store, parent, parent_manifest)
        changes = diff.diff_tables(old_table, new_table, parent, plan.version, same)
    return CardFacts(
        version=plan.version,
        parent=parent,
        stats=split_statistics(meta),
        quirks=card.quirk_counts(meta, plan.quarantined),
        accounting=accounting_summary(plan.quarantine_reasons, plan.subset),
        quarantine_reasons=reasons,
        metadata_notes={str(k): int(v) for k, v in notes.items()},
        validation=validation,
        diff=changes,
        layers=compare.compare_layers(layers, meta),
        provenance={
            "split_mode": plan.split_mode,
            "config": _split_config(cfg),
            "pipeline_version": pipeline.__version__,
            "input_fingerprint": plan.fingerprint,
            "sources": plan.sources,
        },
    )


def _quarantine_reasons(quarantine: pd.DataFrame) -> dict[str, int]:
    """Quarantined items per reason, worded as the cross-check words its reason codes."""
    if quarantine.empty:
        return {}
    column = "reason_code" if "reason_code" in quarantine.columns else "reason"
    counts = quarantine[column].value_counts()
    wording = {**QUARANTINE_REASONS, **CONVERT_QUARANTINE_REASONS}
    return {wording.get(str(code), str(code)): int(n) for code, n in counts.items()}


def _split_config(cfg: RunConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in diff.SPLIT_SETTINGS if k != "split_mode"}


def _describe(
    store: Store, plan: Plan, facts: CardFacts, meta: pd.DataFrame, files: list[dict[str, Any]], *, layers: list[Any]
) -> None:
    """Write the card, its plots and croissant.json; append their entries to ``files``."""
    release = release_prefix(plan.version)
    for rel, body in card.card_files(facts, meta).items():
        files.append(_put_file(store, f"{release}/{rel}", body, 0, rel.rsplit(".", 1)[-1]))
    by_path = {f["path"].removeprefix(release + "/"): f for f in files}
    described = {"version": plan.version, "counts": plan.counts, "annotations": layers}
    doc = croissant.build_croissant(described, by_path, store.uri(release + "/"))
    body = (json.dumps(doc, indent=2) + "\n").encode()
    files.append(_put_file(store, f"{release}/croissant.json", body, 0, "json"))


def _forget_units(store: Store, plan: Plan, results: list[dict[str, Any]], problems: list[str]) -> None:
    """Mark the units whose files failed verification as not converted, so a rerun of the run redoes them."""
    damaged = {problem.split(": ", 1)[0] for problem in problems}
    for result in results:
        if damaged & {f["path"] for f in result["files"]}:
            log.warning(
                "unit %s of run %s failed verification: it will be converted again", result["unit"], plan.run_id
            )
            store.delete(layout.unit_key(plan.run_id, result["unit"]))


def _manifest_extra(facts: CardFacts) -> dict[str, Any]:
    return {
        "parent": facts.parent,
        "patients": {s: facts.stats[s]["patients"] for s in SPLITS},
        "statistics": facts.stats,
        "quirks": {**facts.quirks, "metadata_notes": facts.metadata_notes},
        "validation": facts.validation,
        "image_bytes": facts.image_bytes,
        "diff_from_parent": facts.diff.counts() if facts.diff else None,
        "layer_diff_from_parent": {k: c.counts() for k, c in facts.diff.layers.items()} if facts.diff else None,
        "card": "README.md",
        "croissant": "croissant.json",
    }


def finish(store: Store, cfg: RunConfig, plan: Plan) -> dict[str, Any]:
    """Stage the release and publish it at once (a run without review); return :func:`publish`'s summary."""
    staged = stage(store, cfg, plan)
    return staged.summary if staged.done else publish(store, staged)


def stage(store: Store, cfg: RunConfig, plan: Plan) -> Staged:
    """Write the release's side files and verify everything; return the release as staged (the manifest to be).

    The version was claimed at planning, so no other content can be written under it; nothing lists the version
    as a release until its manifest exists, which only :func:`publish` writes. Unchanged inputs stage nothing:
    the run's workspace goes and the result is ``done``, with the published release's figures.
    """
    summary = {"version": plan.version, "published": False, "counts": plan.counts, "quarantined": plan.quarantined}
    summary |= accounting_summary(plan.quarantine_reasons, plan.subset)
    existing = read_manifest(store, plan.version)
    if plan.unchanged or (existing and existing.get("input_fingerprint") == plan.fingerprint):
        log.info("inputs unchanged: release %s already holds them; nothing new published", plan.version)
        if existing:  # its figures, which leave out the images conversion quarantined (the plan's do not)
            summary |= {k: existing[k] for k in ("counts", "quarantined") if k in existing}
            summary |= accounting_summary(existing.get("quarantine_reasons", plan.quarantine_reasons), plan.subset)
        point_latest_if_behind(store, plan.version, plan.fingerprint)
        release_claim(store, plan.version, plan.fingerprint)
        store.delete_prefix(run_prefix(plan.run_id) + "/")
        return Staged(plan.version, plan.run_id, plan.fingerprint, summary, done=True)
    faults.point("release.finish")
    release = release_prefix(plan.version)
    results, digests = _unit_results(store, plan)
    plan, quarantine = merge_convert_quarantine(store, plan, results)
    summary |= {"counts": plan.counts, "quarantined": plan.quarantined}
    summary |= accounting_summary(plan.quarantine_reasons, plan.subset)
    files, table, layer_tables = _data_side_files(store, plan, results, digests, quarantine)
    meta = table.drop_columns(["bboxes"]).to_pandas()  # what the card and accounting use (boxes: no)
    facts = _card_facts(store, cfg, plan, meta, parent_of(store, plan.version), quarantine=quarantine.frame)
    facts = dataclasses.replace(facts, image_bytes=convert_units.image_bytes(results), small_side=cfg.variant_size)
    layers = [
        layer_release.manifest_entry(layer, published, comparison.to_json())
        for (layer, published), comparison in zip(layer_tables, facts.layers, strict=True)
    ]
    _describe(store, plan, facts, meta, files, layers=layers)
    problems = verify_uploads(store, files, limit=len(files))
    if problems:
        _forget_units(store, plan, results, problems)
        raise VerifyError(
            f"release {plan.version} failed verification, nothing was published: {'; '.join(problems[:10])}; "
            f"re-run run {plan.run_id} (its damaged units will be converted again)"
        )
    figures = accounting.check(store, plan, meta, files, quarantine.frame)
    log.info("accounting: %s", figures.to_dict())
    for f in files:
        f["path"] = f["path"].removeprefix(release + "/")
    extra = {**_manifest_extra(facts), "annotations": layers, "accounting": figures.to_dict()}
    manifest = build_manifest(cfg, plan, files, extra)
    summary["card"] = store.uri(f"{release}/README.md")
    return Staged(plan.version, plan.run_id, plan.fingerprint, summary, manifest)


def publish(store: Store, staged: Staged, review: Decision | None = None) -> dict[str, Any]:
    """Publish a staged release: write its manifest (with the review's decision, if any), then move ``latest``.

    The manifest is a conditional create, the moment the release becomes visible; the run's claim and workspace
    go afterwards. Returns the run's summary (version, ``published``, counts, manifest URI).
    """
    manifest = {**staged.manifest, "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if review is not None:
        manifest["provenance"] = {**manifest.get("provenance", {}), "review": review.to_dict()}
    manifest_sha, created = write_manifest(store, staged.version, manifest)
    faults.point("release.manifest_written")
    move_latest(store, staged.version, manifest_sha, staged.fingerprint)
    release_claim(store, staged.version, staged.fingerprint)
    store.delete_prefix(run_prefix(staged.run_id) + "/")
    if created:
        log.info("published release %s: %s", staged.version, staged.summary.get("counts"))
    else:
        log.info("release %s was published meanwhile by another run with the same inputs", staged.version)
    summary = {**staged.summary, "published": created, "manifest": store.uri(manifest_key(staged.version))}
    return summary | ({"review": review.to_dict()} if review is not None else {})


def plan_units(plan: Plan) -> list[Unit]:
    """The plan's units as objects."""
    return [Unit(**u) for u in plan.units]
