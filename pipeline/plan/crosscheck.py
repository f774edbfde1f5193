"""Cross-file checks: images in the raw zone against Data_Entry rows, bounding boxes and split lists.

Every image and every metadata item ends up in exactly one of three places:

* the **publishable frame**: a Data_Entry row joined with its landed image (boxes attached later);
* the **quarantine** table: a real mismatch or defect, with its reason: an **image** (archive member) rejected
  at extraction, without a Data_Entry row or in no split list; or a **row** of an auxiliary file: a box or
  split-list line with a defect of its own (quarantined at curation, ``Curated.rejected``, with file, line and
  reason), a box whose image is quarantined, a list entry of a landed image that Data_Entry does not list;
* the **subset report**: a Data_Entry row, box or split-list entry whose image is simply not in this source
  (whether or not Data_Entry lists it). A partial download (the Kaggle 5% sample, or some of the 12 archives,
  with the full CSVs and lists beside them) is a normal input: these are counted and reported, never errors.

A Data_Entry row whose image did land but was quarantined is explained by that image's quarantine row (same
``image_index``); it gets no second row. Counts are kept per reason code (``QUARANTINE_REASONS``,
``SUBSET_REASONS``) so a release manifest can hold them with a stable set of keys, and per kind
(``QUARANTINE_KINDS``, ``SUBSET_KINDS``; :func:`accounting_summary`): what a person reads, so that images
and rows lost are never confused with references to images that this source does not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline import nih
from pipeline.plan.kinds import accounting_text
from pipeline.store.storage import Store
from pipeline.store.tables import get_frame, put_json

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
    "bbox_row_defect": "box list row with a defect (label, image name, coordinates or a repeat)",
    "list_entry_without_row": "split-list entry whose image has no Data_Entry row",
    "split_list_row_defect": "split-list line with a defect (not an image name, a repeat, or in both lists)",
    "layer_row_defect": "annotation layer row with a defect (image name, value, patient id, or a repeat)",
    "layer_row_without_row": "annotation layer row whose image has no Data_Entry row",
    "layer_row_image_quarantined": "annotation layer row whose image is quarantined",
}
#: What each quarantine reason code counts: ``images`` (archive members), ``box_rows`` or ``split_list_rows``.
QUARANTINE_KINDS: dict[str, str] = {
    "rejected_at_extraction": "images",
    "not_an_image_name": "images",
    "duplicate_image": "images",
    "image_without_row": "images",
    "image_in_no_split_list": "images",
    "bbox_without_row": "box_rows",
    "bbox_image_quarantined": "box_rows",
    "bbox_row_defect": "box_rows",
    "list_entry_without_row": "split_list_rows",
    "split_list_row_defect": "split_list_rows",
    "layer_row_defect": "layer_rows",
    "layer_row_without_row": "layer_rows",
    "layer_row_image_quarantined": "layer_rows",
}
#: Row defects found at curation (``validate.ROW_DEFECT_COLUMNS``'s ``kind``) -> quarantine reason code.
ROW_DEFECT_CODES: dict[str, str] = {
    "bbox": "bbox_row_defect",
    "split_list": "split_list_row_defect",
    "layer": "layer_row_defect",
}
#: Subset reason code -> wording: the item's image is not in this source (normal for a partial download).
SUBSET_REASONS: dict[str, str] = {
    "data_entry_rows": "Data_Entry row: image not in this source (subset)",
    "bboxes": "box: image not in this source (subset)",
    "train_val_entries": "train_val list entry: image not in this source (subset)",
    "test_entries": "test list entry: image not in this source (subset)",
    "layer_rows": "annotation layer row: image not in this source (subset)",
}
#: What each subset code counts: references to images this source does not hold.
SUBSET_KINDS: dict[str, str] = {
    "data_entry_rows": "data_entry_rows",
    "bboxes": "boxes",
    "train_val_entries": "split_list_names",
    "test_entries": "split_list_names",
    "layer_rows": "layer_rows",
}
LIST_FILES: dict[str, str] = {"train_val": nih.TRAIN_VAL_LIST, "test": nih.TEST_LIST}
MAX_REPORT_EXAMPLES = 20
ROW_QUARANTINE = "row_quarantine.parquet"
_RAW_COLUMNS = ["image_index", "shard", "member", "key", "size", "sha256", "mode", "repaired"]


@dataclass(frozen=True)
class Curated:
    """The curated metadata of a run, as the plan stage reads it back from the workspace.

    Attributes:
        entry: Normalised Data_Entry rows (``pipeline.curate.metadata.DATA_ENTRY_COLUMNS``).
        entry_name: The Data_Entry file name, for messages.
        boxes: Bounding boxes (``image_index``, ``label``, ``x``..``h``, optionally ``line``); None if no file.
        lists: ``{"train_val": [...], "test": [...]}`` image names, or empty when the source has no lists.
        bbox_name: The bounding-box file name, for messages (``BBox_List_2017.csv`` when None).
        rejected: Rows of the auxiliary files quarantined at curation (``validate.ROW_DEFECT_COLUMNS``), already
            left out of ``boxes`` and ``lists``; None when there are none.
    """

    entry: pd.DataFrame
    entry_name: str
    boxes: pd.DataFrame | None = None
    lists: dict[str, list[str]] = field(default_factory=dict)
    bbox_name: str | None = None
    rejected: pd.DataFrame | None = None


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
        """JSON-able report: counts (per kind and per reason), wording and a few example items per reason."""
        return {
            "publishable_images": len(self.frame),
            "quarantined": len(self.quarantine),
            **accounting_summary(self.quarantine_reasons(), self.subset_counts()),
            "quarantine": _report_section(self.quarantine, QUARANTINE_REASONS),
            "subset": _report_section(self.subset, SUBSET_REASONS),
        }

    def summary_text(self) -> str:
        """A few lines for the task log: what is publishable, what is quarantined and why, what is absent."""
        figures = accounting_text(accounting_summary(self.quarantine_reasons(), self.subset_counts()))
        lines = [f"cross-check: {len(self.frame)} images publishable; {figures}"]
        lines += [
            f"  quarantined {n}: {QUARANTINE_REASONS[code]}" for code, n in self.quarantine_reasons().items() if n
        ]
        lines += [f"  subset {n}: {SUBSET_REASONS[code]}" for code, n in self.subset_counts().items() if n]
        return "\n".join(lines)


def accounting_summary(quarantine_reasons: Mapping[str, int], subset: Mapping[str, int]) -> dict[str, Any]:
    """What was quarantined, per kind, apart from what is not in this source (the manifest and summaries).

    Args:
        quarantine_reasons: Quarantined items per reason code (``CrossCheck.quarantine_reasons``).
        subset: Items whose image is not in this source, per code (``CrossCheck.subset_counts``).

    Returns:
        ``{"quarantined_by_kind": {"images": n, "box_rows": n, "split_list_rows": n},
        "not_in_source": {"data_entry_rows": n, "boxes": n, "split_list_names": n}}`` (every key, zeros included).
        A code of another stage (conversion's ``undecodable_image``) counts as an image.
    """
    lost = dict.fromkeys(dict.fromkeys(QUARANTINE_KINDS.values()), 0)
    for code, count in quarantine_reasons.items():
        lost[QUARANTINE_KINDS.get(code, "images")] += int(count)
    absent = dict.fromkeys(dict.fromkeys(SUBSET_KINDS.values()), 0)
    for code, count in subset.items():
        absent[SUBSET_KINDS.get(code, "data_entry_rows")] += int(count)
    return {"quarantined_by_kind": lost, "not_in_source": absent}


def load_rejected(store: Store, prefix: str) -> pd.DataFrame | None:
    """The rows the curate stage quarantined (``<prefix>/row_quarantine.parquet``), or None if it wrote none."""
    key = f"{prefix}/{ROW_QUARANTINE}"
    return get_frame(store, key) if store.exists(key) else None


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
    unknown = boxes[~names.isin(known) & names.isin(present)]
    absent = boxes[~names.isin(present)]
    held = boxes[names.isin(known) & names.isin(present) & ~names.isin(published)]
    src, label = curated.bbox_name or nih.BBOX_LIST, " (" + boxes["label"].astype("str") + ")"
    quarantine = [
        _rows(unknown, "bbox_without_row", f"{QUARANTINE_REASONS['bbox_without_row']} ({curated.entry_name})", src),
        _rows(held, "bbox_image_quarantined", QUARANTINE_REASONS["bbox_image_quarantined"] + label[held.index], src),
    ]
    return quarantine, _rows(absent, "bboxes", _absent_reason(absent, "bboxes", known, curated.entry_name), src)


def _absent_reason(items: pd.DataFrame, code: str, known: set[str], entry_name: str) -> pd.Series:
    """The subset wording, saying so when Data_Entry does not list the image either."""
    unlisted = ~items["image_index"].isin(known)
    return pd.Series(SUBSET_REASONS[code], index=items.index, dtype="str").where(
        ~unlisted, f"{SUBSET_REASONS[code]}; not in {entry_name} either"
    )


def _list_checks(curated: Curated, present: set[str]) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    known = set(curated.entry["image_index"])
    quarantine, subset = [], []
    for role, file_name in LIST_FILES.items():
        entries = pd.DataFrame({"image_index": pd.Series(curated.lists.get(role, []), dtype="str")})
        names = entries["image_index"]
        unknown = entries[~names.isin(known) & names.isin(present)]
        absent = entries[~names.isin(present)]
        reason = f"{file_name} entry whose image has no Data_Entry row ({curated.entry_name})"
        quarantine.append(_rows(unknown, "list_entry_without_row", reason, file_name))
        code = f"{role}_entries"
        subset.append(_rows(absent, code, _absent_reason(absent, code, known, curated.entry_name), file_name))
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
        parts.append(_rows(unlisted, "image_in_no_split_list", _unlisted_reason(unlisted, curated.rejected, reason)))
    return rest, parts


def _unlisted_reason(unlisted: pd.DataFrame, rejected: pd.DataFrame | None, reason: str) -> pd.Series:
    """Why an image is in no split list: its lines there were quarantined (which, and why), or it is absent."""
    out = pd.Series(reason, index=unlisted.index, dtype="str")
    if rejected is None or not len(rejected) or not len(unlisted):
        return out
    lines = rejected[rejected["kind"] == "split_list"].drop_duplicates("image_index").set_index("image_index")
    where = lines["file"].astype("str") + " line " + lines["line"].astype("str")
    found = unlisted["image_index"].map("its split-list line is quarantined: " + lines["reason"] + " (" + where + ")")
    return found.where(found.notna(), out).astype("str")


def _rejected_rows(rejected: pd.DataFrame | None) -> pd.DataFrame:
    """Quarantine rows for the auxiliary-file rows quarantined at curation: file, line and reason."""
    if rejected is None or not len(rejected):
        return _concat([])
    where = rejected["file"].astype("str") + " line " + rejected["line"].astype("str")
    codes = rejected["kind"].map(ROW_DEFECT_CODES).fillna("bbox_row_defect")
    out = pd.DataFrame(
        {
            "source": rejected["file"],
            "member": "line " + rejected["line"].astype("str"),
            "image_index": rejected["image_index"],
            "reason": rejected["reason"].astype("str") + " (" + where + ")",
            "reason_code": codes,
        }
    )
    return out.fillna("").astype("str")[list(QUARANTINE_COLUMNS)]


def reconcile(raw: pd.DataFrame, curated: Curated) -> CrossCheck:
    """Match the raw zone's images with the metadata files.

    Args:
        raw: The raw manifests of every extracted shard (``pipeline.plan.planning.load_raw_images``).
        curated: The curated metadata.

    Returns:
        The publishable rows (Data_Entry columns plus ``shard``, ``key``, ``size``, ``sha256``, ``mode``,
        ``repaired``; sorted by image index), the quarantine table and the subset report (both ``QUARANTINE_COLUMNS``).
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
        quarantine=_concat(
            [*quarantine, *image_parts, *box_quarantine, *list_quarantine, _rejected_rows(curated.rejected)]
        ),
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
