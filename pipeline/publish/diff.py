"""What changed between two releases: images added, removed, relabelled, and moved between splits; and per layer.

Releases are compared on their ``metadata.parquet`` (one row per image, no pixels), keyed by
``image_index``. An image is *relabelled* when its set of labels changed, and *moved* when its split
changed. Releases built with the same split settings (mode, seed, val and test fractions) must move
nothing: a patient's split is a pure function of those settings (see :mod:`pipeline.plan.split`).
Every annotation layer of either release (a struct column named by its id) is compared too: images added to or
removed from the layer and values changed (:mod:`pipeline.layers.changes`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from pipeline import nih
from pipeline.errors import ReleaseNotFoundError
from pipeline.layers.changes import LayerChange, layer_changes
from pipeline.publish.listing import resolve_version
from pipeline.publish.manifest import read_manifest
from pipeline.store.layout import release_prefix
from pipeline.store.storage import Store
from pipeline.store.tables import parquet_table

SPLIT_SETTINGS = ("split_mode", "seed", "val_fraction", "test_fraction")
SPLIT_LIST_FILES = (nih.TRAIN_VAL_LIST, nih.TEST_LIST)
DIFF_COLUMNS = ["image_index", "labels", "split"]


@dataclass(frozen=True)
class Change:
    """One image whose labels or split differ between the two releases."""

    image_index: str
    before: str
    after: str


@dataclass(frozen=True)
class ReleaseDiff:
    """The differences between release ``old`` and release ``new``."""

    old: str | None
    new: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    relabelled: list[Change] = field(default_factory=list)
    moved: list[Change] = field(default_factory=list)
    unchanged: int = 0
    same_split_settings: bool = True
    #: layer id -> its changes, for every layer of either release (the primary counts leave layers out).
    layers: dict[str, LayerChange] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of images in each category."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "relabelled": len(self.relabelled),
            "moved": len(self.moved),
            "unchanged": self.unchanged,
        }

    @property
    def unexpected_moves(self) -> bool:
        """True when images changed split although the split settings are the same (a bug)."""
        return self.same_split_settings and bool(self.moved)

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        """JSON-able form; ``limit`` caps each list (counts stay exact)."""

        def cap(items: list[Any]) -> list[Any]:
            return items if limit is None else items[:limit]

        return {
            "old": self.old,
            "new": self.new,
            "counts": self.counts(),
            "same_split_settings": self.same_split_settings,
            "added": cap(self.added),
            "removed": cap(self.removed),
            "relabelled": [asdict(c) for c in cap(self.relabelled)],
            "moved": [asdict(c) for c in cap(self.moved)],
            "layers": {layer_id: change.to_json(limit) for layer_id, change in self.layers.items()},
        }


def _label_text(labels: list[str] | None) -> str:
    return "|".join(sorted(labels or []))


def _index(table: pa.Table) -> dict[str, tuple[str, str]]:
    """image_index -> (sorted label set as text, split)."""
    names = table.column("image_index").to_pylist()
    labels = table.column("labels").to_pylist()
    splits = table.column("split").to_pylist()
    return {n: (_label_text(lab), str(s)) for n, lab, s in zip(names, labels, splits, strict=True)}


def diff_tables(
    old: pa.Table, new: pa.Table, old_version: str | None, new_version: str, same_split_settings: bool
) -> ReleaseDiff:
    """Compare two metadata tables (columns ``image_index``, ``labels``, ``split``; every further column of either
    table is an annotation layer's struct column, named by the layer id)."""
    before, after = _index(old), _index(new)
    common = sorted(before.keys() & after.keys())
    relabelled = [Change(n, before[n][0], after[n][0]) for n in common if before[n][0] != after[n][0]]
    moved = [Change(n, before[n][1], after[n][1]) for n in common if before[n][1] != after[n][1]]
    changed = {c.image_index for c in relabelled} | {c.image_index for c in moved}
    return ReleaseDiff(
        old=old_version,
        new=new_version,
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        relabelled=relabelled,
        moved=moved,
        unchanged=len(common) - len(changed),
        same_split_settings=same_split_settings,
        layers={layer_id: layer_changes(old, new, layer_id) for layer_id in layer_columns(old, new)},
    )


def layer_columns(old: pa.Table, new: pa.Table) -> list[str]:
    """The layer columns of either table: every column besides ``DIFF_COLUMNS``, sorted."""
    return sorted((set(old.column_names) | set(new.column_names)) - set(DIFF_COLUMNS))


def layer_ids(manifest: dict[str, Any]) -> list[str]:
    """The ids of a release's annotation layers (its manifest's ``annotations``; none in an older release)."""
    return [str(entry["id"]) for entry in manifest.get("annotations") or []]


def split_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide every patient's split, from a manifest.

    In ``official`` mode NIH's split lists are settings too: a changed ``test_list.txt`` moves patients.
    """
    config = manifest.get("config", {})
    settings = {key: config.get(key) for key in SPLIT_SETTINGS}
    settings["split_mode"] = manifest.get("split_mode", settings["split_mode"])
    if settings["split_mode"] == "official":
        hashes = manifest.get("sources", {}).get("files_sha256", {})
        settings["split_lists"] = {name: hashes.get(name) for name in SPLIT_LIST_FILES}
    return settings


def read_metadata(store: Store, version: str, manifest: dict[str, Any] | None = None) -> pa.Table:
    """Read a published release's ``metadata.parquet``: the columns a diff needs and the layers its manifest lists.

    ``manifest`` is the release's own, when the caller has it already (else it is read from the store).
    """
    if manifest is None:
        manifest = read_manifest(store, version) or {}
    body = store.get_bytes(f"{release_prefix(version)}/metadata.parquet")
    return parquet_table(body, columns=DIFF_COLUMNS + layer_ids(manifest))


def _published(store: Store, version: str) -> tuple[str, dict[str, Any]]:
    resolved = resolve_version(store, version)
    manifest = read_manifest(store, resolved)
    if manifest is None:
        raise ReleaseNotFoundError(f"release {resolved} is not published in {store.uri('releases/')}")
    return resolved, manifest


def diff_releases(store: Store, old: str, new: str) -> ReleaseDiff:
    """Compare two published releases of one store (``latest`` is accepted for either)."""
    old_version, old_manifest = _published(store, old)
    new_version, new_manifest = _published(store, new)
    same = split_settings(old_manifest) == split_settings(new_manifest)
    old_table = read_metadata(store, old_version, old_manifest)
    new_table = read_metadata(store, new_version, new_manifest)
    return diff_tables(old_table, new_table, old_version, new_version, same)


def _listing(title: str, changes: list[str], limit: int) -> list[str]:
    if not changes:
        return []
    lines = [f"{title}:"] + [f"  {item}" for item in changes[:limit]]
    if len(changes) > limit:
        lines.append(f"  ... and {len(changes) - limit} more (use --json for all)")
    return lines


def render_text(diff: ReleaseDiff, limit: int = 20) -> str:
    """A person-readable report: counts first, then up to ``limit`` examples per category."""
    counts = diff.counts()
    lines = [f"release {diff.old} -> {diff.new}"]
    lines += [f"  {name:<10} {count:>8}" for name, count in counts.items()]
    if diff.unexpected_moves:
        lines.append(
            f"WARNING: {counts['moved']} images changed split although both releases use the same split "
            "settings (mode, seed, fractions, official lists); splits must be stable: report this as a pipeline bug"
        )
    elif diff.moved:
        lines.append(
            "note: the split settings (mode, seed, fractions or NIH's split lists) differ between these releases, "
            "so images may change split"
        )
    lines += _listing("added", diff.added, limit)
    lines += _listing("removed", diff.removed, limit)
    lines += _listing("relabelled", [f"{c.image_index}: {c.before} -> {c.after}" for c in diff.relabelled], limit)
    lines += _listing("moved", [f"{c.image_index}: {c.before} -> {c.after}" for c in diff.moved], limit)
    for layer_id, change in diff.layers.items():
        lines += _layer_lines(diff, layer_id, change, limit)
    return "\n".join(lines)


def _layer_lines(diff: ReleaseDiff, layer_id: str, change: LayerChange, limit: int) -> list[str]:
    """One layer's part of the text report: its counts, then up to ``limit`` examples per category."""
    where = ""
    if not change.in_old:
        where = f" (new: not in release {diff.old})"
    elif not change.in_new:
        where = f" (dropped: not in release {diff.new})"
    lines = [f"layer {layer_id}{where}"]
    lines += [f"  {name:<10} {count:>8}" for name, count in change.counts().items()]
    listed = _listing("added to the layer", change.added, limit)
    listed += _listing("removed from the layer", change.removed, limit)
    listed += _listing("values changed", [f"{c.image_index}: {c.before} -> {c.after}" for c in change.changed], limit)
    return lines + [f"  {line}" for line in listed]


def render_json(diff: ReleaseDiff) -> str:
    """The whole diff as indented JSON."""
    return json.dumps(diff.to_json(), indent=2)
