"""Cross-file checks: images in the raw zone against Data_Entry rows, bounding boxes and split lists.

Every image and every metadata item ends up in exactly one of three places:

* the **publishable frame**: a Data_Entry row joined with its landed image (boxes attached later);
* the **quarantine** table: a real mismatch, with its reason (an image rejected at extraction or without a
  Data_Entry row, a box or list entry naming an image that Data_Entry does not list...);
* the **subset report**: a Data_Entry row, box or split-list entry whose image is simply not in this source.
  A partial download (the Kaggle 5% sample, or some of the 12 archives, with the full CSVs and lists beside
  them) is a normal input: these are counted and reported, never errors.

A Data_Entry row whose image did land but was quarantined is explained by that image's quarantine row (same
``image_index``); it gets no second row. Counts are kept per reason code (``QUARANTINE_REASONS``,
``SUBSET_REASONS``) so a release manifest can hold them with a stable set of keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline import nih
from pipeline.storage import Store
from pipeline.workspace import put_json

log = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ("source", "member", "image_index", "reason", "reason_code")
#: Quarantine reason code -> wording (the ``reason`` column may add detail, e.g. the extractor's message).
QUARANTINE_REASONS: dict[str, str] = {
    "rejected_at_extraction": "image rejected at extraction",
    "not_an_image_name": "archive member skipped: name is not NNNNNNNN_NNN.png",
    "duplicate_image": "same image name already landed from an earlier shard",
    "image_without_row": "image has no Data_Entry row",
    "image_in_no_split_list": "image is in neither split list",
    "bbox_without_row": "box whose image has no Data_Entry row",
    "bbox_image_quarantined": "box whose image is quarantined",
    "list_entry_without_row": "split-list entry whose image has no Data_Entry row",
}
#: Subset reason code -> wording: the item's image is not in this source (normal for a partial download).
SUBSET_REASONS: dict[str, str] = {
    "data_entry_rows": "Data_Entry row: image not in this source (subset)",
    "bboxes": "box: image not in this source (subset)",
    "train_val_entries": "train_val list entry: image not in this source (subset)",
    "test_entries": "test list entry: image not in this source (subset)",
}
LIST_FILES: dict[str, str] = {"train_val": nih.TRAIN_VAL_LIST, "test": nih.TEST_LIST}
MAX_REPORT_EXAMPLES = 20
_RAW_COLUMNS = ["image_index", "shard", "key", "size", "sha256", "mode"]


@dataclass(frozen=True)
class Curated:
    """The curated metadata of a run, as the plan stage reads it back from the workspace.

    Attributes:
        entry: Normalised Data_Entry rows (``pipeline.metadata.DATA_ENTRY_COLUMNS``).
        entry_name: The Data_Entry file name, for messages.
        boxes: Bounding boxes (``image_index``, ``label``, ``x``..``h``, optionally ``line``); None if no file.
        lists: ``{"train_val": [...], "test": [...]}`` image names, or empty when the source has no lists.
        bbox_name: The bounding-box file name, for messages (``BBox_List_2017.csv`` when None).
    """

    entry: pd.DataFrame
    entry_name: str
    boxes: pd.DataFrame | None = None
    lists: dict[str, list[str]] = field(default_factory=dict)
    bbox_name: str | None = None


@dataclass(frozen=True)
class CrossCheck:
    """The outcome of the cross-file checks."""

    frame: pd.DataFrame
    quarantine: pd.DataFrame
    subset: pd.DataFrame

    def quarantine_reasons(self) -> dict[str, int]:
        """Quarantined items per reason code (every code, zeros included, so the keys are stable)."""
        return _counts(self.quarantine, QUARANTINE_REASONS)

    def subset_counts(self) -> dict[str, int]:
        """Items whose image is not in this source, per kind (every kind, zeros included)."""
        return _counts(self.subset, SUBSET_REASONS)

    def report(self) -> dict[str, Any]:
        """JSON-able report: counts, wording and a few example items per reason."""
        return {
            "publishable_images": len(self.frame),
            "quarantined": len(self.quarantine),
            "quarantine": _report_section(self.quarantine, QUARANTINE_REASONS),
            "subset": _report_section(self.subset, SUBSET_REASONS),
        }

    def summary_text(self) -> str:
        """A few lines for the task log: what is publishable, what is quarantined and why, what is absent."""
        lines = [f"cross-check: {len(self.frame)} images publishable, {len(self.quarantine)} items quarantined"]
        lines += [
            f"  quarantined {n}: {QUARANTINE_REASONS[code]}" for code, n in self.quarantine_reasons().items() if n
        ]
        lines += [f"  subset {n}: {SUBSET_REASONS[code]}" for code, n in self.subset_counts().items() if n]
        return "\n".join(lines)


def _counts(frame: pd.DataFrame, reasons: dict[str, str]) -> dict[str, int]:
    found = frame["reason_code"].value_counts()
    return {code: int(found.get(code, 0)) for code in reasons}


def _report_section(frame: pd.DataFrame, reasons: dict[str, str]) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for code, wording in reasons.items():
        rows = frame[frame["reason_code"] == code]
        if len(rows):
            examples = rows[["source", "member", "image_index", "reason"]].head(MAX_REPORT_EXAMPLES)
            section[code] = {"reason": wording, "count": len(rows), "examples": examples.to_dict("records")}
    return section


def _rows(frame: pd.DataFrame, code: str, reason: str | pd.Series, source: str | pd.Series = "") -> pd.DataFrame:
    """Quarantine/subset rows for ``frame`` (its ``shard``/``member`` columns are used when present)."""
    blank = pd.Series("", index=frame.index, dtype="str")
    out = pd.DataFrame(
        {
            "source": frame.get("shard", source),
            "member": frame.get("member", blank),
            "image_index": frame["image_index"],
            "reason": reason,
            "reason_code": code,
        },
        index=frame.index,
    )
    return out.fillna("").astype("str")


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame({c: pd.Series([], dtype="str") for c in QUARANTINE_COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(QUARANTINE_COLUMNS)]


def _raw_quarantine(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Split the raw manifests into landed images (first copy of each name) and quarantine rows."""
    raw = raw.reindex(columns=list(dict.fromkeys([*raw.columns, *_RAW_COLUMNS, "member", "status", "reason"])))
    rejected = raw[raw["status"] == "quarantined"]
    skipped = raw[(raw["status"] != "ok") & (raw["status"] != "quarantined")]
    ok = raw[raw["status"] == "ok"]
    dup_mask = ok.duplicated("image_index", keep="first")
    first_shard = ok[~dup_mask].set_index("image_index")["shard"]
    dups = ok[dup_mask]
    dup_reason = QUARANTINE_REASONS["duplicate_image"] + " (" + dups["image_index"].map(first_shard).astype("str") + ")"
    parts = [
        _rows(rejected, "rejected_at_extraction", rejected["reason"].fillna("")),
        _rows(skipped, "not_an_image_name", skipped["reason"].fillna("")),
        _rows(dups, "duplicate_image", dup_reason),
    ]
    return ok[~dup_mask], parts


def _box_line(boxes: pd.DataFrame) -> pd.Series:
    if "line" not in boxes:
        return pd.Series("", index=boxes.index, dtype="str")
    return "line " + boxes["line"].astype("Int64").astype("str")


def _box_checks(curated: Curated, present: set[str], published: set[str]) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    boxes = curated.boxes
    if boxes is None or not len(boxes):
        return [], _concat([])
    boxes = boxes.assign(member=_box_line(boxes))
    names, known = boxes["image_index"], set(curated.entry["image_index"])
    unknown = boxes[~names.isin(known)]
    absent = boxes[names.isin(known) & ~names.isin(present)]
    held = boxes[names.isin(known) & names.isin(present) & ~names.isin(published)]
    src, label = curated.bbox_name or nih.BBOX_LIST, " (" + boxes["label"].astype("str") + ")"
    quarantine = [
        _rows(unknown, "bbox_without_row", f"{QUARANTINE_REASONS['bbox_without_row']} ({curated.entry_name})", src),
        _rows(held, "bbox_image_quarantined", QUARANTINE_REASONS["bbox_image_quarantined"] + label[held.index], src),
    ]
    return quarantine, _rows(absent, "bboxes", SUBSET_REASONS["bboxes"], src)


def _list_checks(curated: Curated, present: set[str]) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    known = set(curated.entry["image_index"])
    quarantine, subset = [], []
    for role, file_name in LIST_FILES.items():
        entries = pd.DataFrame({"image_index": pd.Series(curated.lists.get(role, []), dtype="str")})
        names = entries["image_index"]
        unknown = entries[~names.isin(known)]
        absent = entries[names.isin(known) & ~names.isin(present)]
        reason = f"{file_name} entry whose image has no Data_Entry row ({curated.entry_name})"
        quarantine.append(_rows(unknown, "list_entry_without_row", reason, file_name))
        subset.append(_rows(absent, f"{role}_entries", SUBSET_REASONS[f"{role}_entries"], file_name))
    return quarantine, subset


def _image_checks(landed: pd.DataFrame, curated: Curated) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Split landed images into publishable ones and those without a row or outside both split lists."""
    without_row = landed[~landed["image_index"].isin(curated.entry["image_index"])]
    rest = landed[landed["image_index"].isin(curated.entry["image_index"])]
    parts = [_rows(without_row, "image_without_row", f"image has no Data_Entry row ({curated.entry_name})")]
    if curated.lists:
        listed = set(curated.lists.get("train_val", [])) | set(curated.lists.get("test", []))
        unlisted = rest[~rest["image_index"].isin(listed)]
        rest = rest[rest["image_index"].isin(listed)]
        reason = f"image is in neither {nih.TRAIN_VAL_LIST} nor {nih.TEST_LIST}"
        parts.append(_rows(unlisted, "image_in_no_split_list", reason))
    return rest, parts


def reconcile(raw: pd.DataFrame, curated: Curated) -> CrossCheck:
    """Match the raw zone's images with the metadata files.

    Args:
        raw: The raw manifests of every extracted shard (``pipeline.plan.load_raw_images``).
        curated: The curated metadata.

    Returns:
        The publishable rows (Data_Entry columns plus ``shard``, ``key``, ``size``, ``sha256``, ``mode``; sorted
        by image index), the quarantine table and the subset report (both ``QUARANTINE_COLUMNS``).
    """
    landed, quarantine = _raw_quarantine(raw)
    publishable, image_parts = _image_checks(landed, curated)
    joined = curated.entry.merge(publishable[_RAW_COLUMNS], on="image_index")
    present, published = set(raw["image_index"]), set(joined["image_index"])
    entry = curated.entry
    absent_rows = entry[~entry["image_index"].isin(present)]
    subset = [_rows(absent_rows, "data_entry_rows", SUBSET_REASONS["data_entry_rows"], curated.entry_name)]
    box_quarantine, box_subset = _box_checks(curated, present, published)
    list_quarantine, list_subset = _list_checks(curated, present)
    result = CrossCheck(
        frame=joined.sort_values("image_index", ignore_index=True),
        quarantine=_concat(quarantine + image_parts + box_quarantine + list_quarantine),
        subset=_concat([*subset, box_subset, *list_subset]),
    )
    log.info("%s", result.summary_text())
    return result


def attach_bboxes(frame: pd.DataFrame, boxes: pd.DataFrame | None) -> pd.DataFrame:
    """Add a ``bboxes`` column: a list of {label, x, y, w, h} per image (empty when none)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in (boxes if boxes is not None else pd.DataFrame()).to_dict("records"):
        box = {"label": str(row["label"]), **{k: float(row[k]) for k in ("x", "y", "w", "h")}}
        grouped.setdefault(str(row["image_index"]), []).append(box)
    column = pd.Series([grouped.get(str(name), []) for name in frame["image_index"]], index=frame.index, dtype=object)
    return frame.assign(bboxes=column)


def write_report(store: Store, prefix: str, result: CrossCheck) -> None:
    """Write ``<prefix>/validation/crosscheck.json`` (published with the release under ``validation/``)."""
    put_json(store, f"{prefix}/validation/crosscheck.json", result.report())
