"""Plan stage: join images with metadata, assign patient-level splits, cut the conversion into units.

Every input image and metadata row ends up either in the plan (to be published) or in the
quarantine table with its reason. The plan is kept in the run's workspace:

- ``runs/<run>/plan.parquet``: one row per image to publish (metadata, split, ``patient_order``, unit, raw key,
  sha256, and one ``layer__<id>`` column per annotation layer: :mod:`pipeline.plan.annotations`), one row group
  per unit, so that a conversion task reads only its own rows (``UNIT_KEY``)
- ``runs/<run>/quarantine.parquet``: shard, member, image, reason
- ``runs/<run>/plan.json``: version, input fingerprint, units, counts
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

import pipeline
from pipeline import nih
from pipeline.config import RunConfig
from pipeline.curate.outcomes import ValidationReport, raise_if_blocking
from pipeline.ingest.rawzone import archive_prefix
from pipeline.ingest.sources import shard_stem
from pipeline.layers.schema import Layer
from pipeline.plan import annotations as plan_layers
from pipeline.plan import split, stats, versions
from pipeline.plan.crosscheck import CrossCheck, Curated, attach_bboxes, load_rejected, reconcile, write_report
from pipeline.store import layout
from pipeline.store.layout import run_prefix
from pipeline.store.storage import Store
from pipeline.store.tables import get_frame, get_json, parquet_table, put_frame, put_grouped, put_json

log = logging.getLogger(__name__)

#: The plan table's columns naming each row's unit (``split``, ``unit``: a :class:`Unit`'s split and index); the
#: table has one row group per unit, so that converting a unit reads its own rows only.
UNIT_KEY = ("split", "unit")


@dataclass(frozen=True)
class Unit:
    """One independent conversion job: a slice of one split, written as one tar and its Parquet part."""

    split: str
    index: int
    images: int
    bytes: int

    @property
    def name(self) -> str:
        """``train-000000``: the stem of its WebDataset shard and Parquet file."""
        return f"{self.split}-{self.index:06d}"


@dataclass(frozen=True)
class Plan:
    """What a run will publish (goes through XCom: no per-image data)."""

    run_id: str
    version: str
    fingerprint: str
    unchanged: bool
    split_mode: str
    units: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    subset: dict[str, int] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)  # each annotation layer's ``Layer.to_dict()``

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)

    def annotation_layers(self) -> tuple[Layer, ...]:
        """The release's annotation layers, in the order the run named them."""
        return tuple(Layer.from_dict(item) for item in self.layers)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


def load_raw_images(store: Store, archives: Mapping[str, str]) -> pd.DataFrame:
    """Concatenate the raw manifests of exactly these archives (``{archive name: sha256}``, as a run's shard
    results and ``Plan.sources["archives_sha256"]`` give them), in shard order.

    Each manifest is the one of that archive's content (:func:`pipeline.ingest.rawzone.archive_prefix`), so no
    other archive's rows (another source's, an older version's) can enter the plan.
    """
    frames = []
    for name in sorted(archives, key=lambda n: (shard_stem(n), n)):
        rel = layout.archive_manifest_key(archive_prefix(name, archives[name]))
        frame = parquet_table(store.get_bytes(rel)).to_pandas()
        frames.append(frame.assign(shard=name))  # the name this run found the content under
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image_index", "status"])


def shard_archives(shard_results: list[dict[str, Any]]) -> dict[str, str]:
    """``{archive name: sha256}`` of a run's extraction results: what its plan reads and its manifest names."""
    return {str(r["shard"]): str(r["archive_sha256"]) for r in shard_results}


def assign(frame: pd.DataFrame, cfg: RunConfig, lists: dict[str, list[str]]) -> tuple[pd.DataFrame, str]:
    """Add the ``split`` column; return the frame and the resolved mode."""
    mode = split.resolve_mode(cfg.split_mode, bool(lists.get("test")))
    test_patients = {ids[0] for name in lists.get("test", []) if (ids := nih.image_ids(name))}
    by_patient = split.assign_patients(
        frame["patient_id"],
        mode,
        seed=cfg.seed,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        test_patients=test_patients,
    )
    frame = frame.assign(split=frame["patient_id"].map(lambda p: by_patient[int(p)]))
    return frame, mode


def cut_units(frame: pd.DataFrame, target_bytes: int, min_shards: int = 1) -> tuple[pd.DataFrame, list[Unit]]:
    """Cut each split's images, in the frame's order, into contiguous units numbered from 0, balanced in bytes.

    A split gets the fewest units that keep each one within ``target_bytes`` (an image over it is a unit of its
    own, never dropped), and at least ``min_shards`` of them, or one per image when it has fewer images than that.
    Adds the ``unit`` column (the unit's index within its split).
    """
    splits, sizes = frame["split"].to_numpy(), frame["size"].to_numpy(dtype="int64")
    unit_col, units = np.zeros(len(frame), dtype="int64"), []
    for name in split.SPLITS:
        rows = np.flatnonzero(splits == name)
        bounds = balanced_cuts(sizes[rows], target_bytes, min_shards) if len(rows) else []
        for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
            unit_col[rows[start:stop]] = index
            units.append(Unit(name, index, stop - start, int(sizes[rows[start:stop]].sum())))
    return frame.assign(unit=unit_col), units


def balanced_cuts(sizes: np.ndarray, target_bytes: int, min_shards: int = 1) -> list[int]:
    """Boundaries ``[0, b1, ..., n]`` of ``k`` contiguous, non-empty parts of ``sizes`` (n >= 1 items).

    ``k`` is the fewest parts that keep every part of more than one item within ``target_bytes``, or
    ``min(min_shards, n)`` when that is more. The parts take equal shares of the total where that keeps them within
    the target, else the least largest part that ``k`` parts allow.
    """
    ends = np.cumsum(sizes, dtype="int64")
    k = max(len(_packed(ends, target_bytes)) - 1, min(min_shards, len(ends)))
    even = _even_cuts(ends, k)
    if _within(ends, even, target_bytes):
        return even
    low, high = 1, target_bytes  # the least cap whose packing needs at most k parts (the target's does)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if len(_packed(ends, middle)) - 1 <= k else (middle + 1, high)
    return _split_to(ends, _packed(ends, low), k)


def _part_sums(ends: np.ndarray, bounds: list[int]) -> np.ndarray:
    return np.diff(np.concatenate([[0], ends[np.array(bounds[1:]) - 1]]))


def _within(ends: np.ndarray, bounds: list[int], cap: int) -> bool:
    """Whether every part of more than one item sums to at most ``cap``."""
    return bool(np.all((_part_sums(ends, bounds) <= cap) | (np.diff(bounds) == 1)))


def _even_cuts(ends: np.ndarray, k: int) -> list[int]:
    """``k`` non-empty parts, each boundary at the running sum nearest to its share (on a tie, the earlier one)."""
    n, total, scaled, bounds = len(ends), int(ends[-1]), ends * k, [0]
    for u in range(1, k):
        j = int(np.searchsorted(scaled, u * total))  # the first item whose running sum reaches the share
        below = int(scaled[j - 1]) if j else 0
        cut = j if u * total - below <= int(scaled[j]) - u * total else j + 1
        bounds.append(min(max(cut, bounds[-1] + 1), n - (k - u)))
    return [*bounds, n]


def _packed(ends: np.ndarray, cap: int) -> list[int]:
    """Greedy packing: each part takes items while its sum stays within ``cap`` (an item over it alone)."""
    bounds = [0]
    while bounds[-1] < len(ends):
        base = int(ends[bounds[-1] - 1]) if bounds[-1] else 0
        bounds.append(max(int(np.searchsorted(ends, base + cap, side="right")), bounds[-1] + 1))
    return bounds


def _split_to(ends: np.ndarray, bounds: list[int], k: int) -> list[int]:
    """Halve the largest part of several items (by bytes) until there are ``k`` parts."""
    while len(bounds) - 1 < k:
        sums = np.where(np.diff(bounds) > 1, _part_sums(ends, bounds), -1)
        i = int(np.argmax(sums))
        start, stop = bounds[i], bounds[i + 1]
        middle = _even_cuts(ends[start:stop] - (int(ends[start - 1]) if start else 0), 2)[1]
        bounds.insert(i + 1, start + middle)
    return bounds


def patient_order(frame: pd.DataFrame) -> pd.Series:
    """Each image's place among its patient's images (0 for the first), by ``follow_up`` then ``image_index``."""
    ordered = frame.sort_values(["patient_id", "follow_up", "image_index"], kind="stable")
    return ordered.groupby("patient_id", sort=False).cumcount().reindex(frame.index).astype("int64")


def fingerprint(cfg: RunConfig, mode: str, shard_hashes: dict[str, str], file_hashes: dict[str, str]) -> str:
    """Hash everything a release's content depends on: inputs, split settings, pipeline version."""
    material = {
        "pipeline": pipeline.__version__,
        "split_mode": mode,
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "shard_target_bytes": cfg.shard_target_bytes,
        "min_shards": cfg.min_shards,
        "variant_size": cfg.variant_size,
        "shards": shard_hashes,
        "files": file_hashes,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Draft:
    """A release planned but not yet given a version: what the real plan and the dry run both start from."""

    frame: pd.DataFrame
    checked: CrossCheck
    units: list[Unit]
    split_mode: str
    fingerprint: str
    archives: dict[str, str]
    checks: ValidationReport
    layers: tuple[Layer, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Images per split."""
        return {s: int((self.frame["split"] == s).sum()) for s in split.SPLITS}


def draft(store: Store, cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> Draft:
    """Join the raw zone with the curated metadata, assign splits, cut units, fingerprint and check it; write nothing.

    Reads the run's curated files (``runs/<run>/data_entry.parquet``, ``bboxes.parquet``, ``split_lists.json``,
    the rows quarantined at curation) and the raw manifests of exactly this run's archives.
    """
    prefix = run_prefix(cfg.run_id)
    entry = get_frame(store, f"{prefix}/data_entry.parquet")
    lists: dict[str, list[str]] = get_json(store, f"{prefix}/split_lists.json")
    archives = shard_archives(shard_results)
    raw = load_raw_images(store, archives)
    boxes = get_frame(store, f"{prefix}/bboxes.parquet")
    rejected = load_rejected(store, prefix)  # auxiliary-file rows quarantined at curation
    curated_files = Curated(entry, curated["data_entry_file"], boxes, lists, curated.get("bbox_file"), rejected)
    checked = reconcile(raw, curated_files)
    joined = plan_layers.join_layers(
        attach_bboxes(checked.frame, boxes),
        plan_layers.load_layers(store, prefix),
        set(entry["image_index"].astype("str")),
        set(raw["image_index"].astype("str")),
    )
    checked = _with_layer_rows(checked, joined)
    frame, mode = assign(joined.frame, cfg, lists)
    frame = frame.assign(patient_order=patient_order(frame))
    frame, units = cut_units(frame, cfg.shard_target_bytes, cfg.min_shards)
    fp = fingerprint(cfg, mode, archives, curated["file_sha256"])
    return Draft(frame, checked, units, mode, fp, archives, stats.check_release_metadata(frame), joined.layers)


def _with_layer_rows(checked: CrossCheck, joined: plan_layers.LayerJoin) -> CrossCheck:
    """The cross-check with the layer rows that are quarantined or not in this source added to its tables."""

    def add(table: pd.DataFrame, parts: list[pd.DataFrame]) -> pd.DataFrame:
        parts = [part for part in parts if len(part)]
        return pd.concat([table, *parts], ignore_index=True) if parts else table

    return CrossCheck(checked.frame, add(checked.quarantine, joined.quarantine), add(checked.subset, joined.subset))


def build_plan(store: Store, cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> Plan:
    """Build the run's plan from the raw zone and the curated metadata, claim its release version, and keep it in
    the run's workspace (``plan.json``, ``plan.parquet``, ``quarantine.parquet``, the cross-check report and the
    release checks); blocking check failures fail the run after the checks are written."""
    prefix = run_prefix(cfg.run_id)
    made = draft(store, cfg, shard_results, curated)
    write_report(store, prefix, made.checked)
    version, unchanged = versions.choose_version(store, cfg, made.fingerprint, claim=True)
    put_json(store, f"{prefix}/validation/release_checks.json", made.checks.to_json())
    put_json(store, f"{prefix}/validation/statistics.json", stats.split_statistics(made.frame))
    raise_if_blocking(made.checks)
    quarantine = made.checked.quarantine
    plan_rows = pa.Table.from_pandas(made.frame, preserve_index=False)
    put_grouped(store, layout.plan_table_key(cfg.run_id), plan_rows, list(UNIT_KEY))  # a row group per unit
    put_frame(store, layout.quarantine_key(cfg.run_id), quarantine)
    counts = made.counts
    todo = [] if unchanged else [asdict(u) for u in made.units]
    sources = {"archives_sha256": made.archives, "files_sha256": dict(curated["file_sha256"])}
    reasons, subset = made.checked.quarantine_reasons(), made.checked.subset_counts()
    plan = Plan(
        cfg.run_id, version, made.fingerprint, unchanged, made.split_mode, todo, counts, len(quarantine), sources,
        reasons, subset, [layer.to_dict() for layer in made.layers],
    )  # fmt: skip
    put_json(store, layout.plan_key(cfg.run_id), plan.to_dict())
    log.info(
        "plan: release %s (%s), %s, %d quarantined, %d units",
        version,
        "unchanged" if unchanged else "new",
        counts,
        len(quarantine),
        len(made.units),
    )
    return plan
