"""Cross-file checks: every image, Data_Entry row, box and list entry is published, quarantined or reported."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from pipeline.curate.metadata import load_bboxes, load_data_entry
from pipeline.curate.quarantine import ROW_DEFECT_COLUMNS
from pipeline.curate.validate import validate_bboxes
from pipeline.plan.crosscheck import (
    QUARANTINE_COLUMNS,
    QUARANTINE_KINDS,
    QUARANTINE_REASONS,
    SUBSET_REASONS,
    Curated,
    accounting_summary,
    attach_bboxes,
    reconcile,
)
from pipeline.plan.kinds import accounting_lines
from tests.reference import BBOX_FILE, DATA_ENTRY_FILE, IMAGES

ENTRY = "Data_Entry_2017.csv"


def landed(name: str, shard: str = "images_001.zip", status: str = "ok", reason: str = "") -> dict[str, Any]:
    """One row of an extracted shard's raw manifest."""
    return {
        "image_index": name, "shard": shard, "member": f"images/{name}", "key": f"raw/{name}" * (status == "ok"),
        "size": 100, "sha256": "0" * 64, "mode": "L", "width": 64, "height": 64, "status": status, "reason": reason,
    }  # fmt: skip


def entry_rows(*names: str) -> pd.DataFrame:
    return pd.DataFrame({"image_index": list(names), "patient_id": [int(n[:8]) for n in names]})


def boxes(*names: str) -> pd.DataFrame:
    count = len(names)
    frame = pd.DataFrame({"image_index": list(names), "label": ["Mass"] * count, "line": range(2, count + 2)})
    return frame.assign(**{axis: [10.0] * count for axis in "xywh"})


def reasons_of(frame: pd.DataFrame) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for row in frame.to_dict("records"):
        grouped.setdefault(row["reason_code"], []).append(row["image_index"])
    return grouped


def row_defects(*rows: tuple[str, str, int, str, str]) -> pd.DataFrame:
    """Rows quarantined at curation (``validate.ROW_DEFECT_COLUMNS``)."""
    return pd.DataFrame(rows, columns=list(ROW_DEFECT_COLUMNS)).astype({"line": "int64"})


IN_BOTH = "00000006_000.png is in both train_val_list.txt and test_list.txt: its split is unknown"


@pytest.fixture(scope="module")
def mismatches() -> Any:
    raw = pd.DataFrame([
        landed("00000001_000.png"),
        landed("00000002_000.png"),
        landed("00000002_000.png", shard="images_002.zip"),
        landed("00000003_000.png", status="quarantined", reason="PNG CRC mismatch in a IDAT chunk at byte 33"),
        landed("README.txt", status="skipped", reason="name is not NNNNNNNN_NNN.png"),
        landed("00000004_000.png"),
        landed("00000006_000.png"),
        landed("00000009_000.png"),
    ])  # fmt: skip
    entry = entry_rows("00000001_000.png", "00000002_000.png", "00000003_000.png", "00000004_000.png",
                       "00000005_000.png", "00000006_000.png")  # fmt: skip
    box = boxes("00000001_000.png", "00000003_000.png", "00000005_000.png", "00000007_000.png", "00000009_000.png")
    lists = {
        "train_val": ["00000001_000.png", "00000002_000.png", "00000005_000.png", "00000008_000.png",
                      "00000009_000.png"],
        "test": ["00000003_000.png"],
    }  # fmt: skip
    rejected = row_defects(
        ("bbox", "BBox_List_2017.csv", 9, "00000001_000.png", "label 'Flu' is not one of the 8 bounding-box findings"),
        ("split_list", "test_list.txt", 2, "00000006_000.png", IN_BOTH),
    )
    return reconcile(raw, Curated(entry, ENTRY, box, lists, rejected=rejected)), box


def test_each_mismatch_is_quarantined_with_its_reason(mismatches: Any) -> None:
    result, _ = mismatches
    assert list(result.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert reasons_of(result.quarantine) == {
        "rejected_at_extraction": ["00000003_000.png"],
        "not_an_image_name": ["README.txt"],
        "duplicate_image": ["00000002_000.png"],
        "image_without_row": ["00000009_000.png"],
        "image_in_no_split_list": ["00000004_000.png", "00000006_000.png"],
        "bbox_without_row": ["00000009_000.png"],
        "bbox_image_quarantined": ["00000003_000.png"],
        "bbox_row_defect": ["00000001_000.png"],
        "list_entry_without_row": ["00000009_000.png"],
        "split_list_row_defect": ["00000006_000.png"],
    }
    reason = dict(zip(result.quarantine["image_index"] + "/" + result.quarantine["reason_code"],
                      result.quarantine["reason"], strict=True))  # fmt: skip
    assert reason["00000003_000.png/rejected_at_extraction"] == "PNG CRC mismatch in a IDAT chunk at byte 33"
    assert reason["00000009_000.png/image_without_row"] == f"image has no Data_Entry row ({ENTRY})"
    assert reason["00000002_000.png/duplicate_image"].endswith("(images_001.zip)")
    unlisted = "image is in neither train_val_list.txt nor test_list.txt"
    assert reason["00000004_000.png/image_in_no_split_list"] == unlisted
    assert reason["00000006_000.png/image_in_no_split_list"] == (
        f"its split-list line is quarantined: {IN_BOTH} (test_list.txt line 2)"
    )
    assert reason["00000009_000.png/list_entry_without_row"] == (
        f"train_val_list.txt entry whose image has no Data_Entry row ({ENTRY})"
    )
    assert reason["00000001_000.png/bbox_row_defect"] == (
        "label 'Flu' is not one of the 8 bounding-box findings (BBox_List_2017.csv line 9)"
    )
    assert reason["00000006_000.png/split_list_row_defect"] == f"{IN_BOTH} (test_list.txt line 2)"
    box = result.quarantine[result.quarantine["reason_code"] == "bbox_without_row"].iloc[0]
    assert (box["source"], box["member"]) == ("BBox_List_2017.csv", "line 6")
    defect = result.quarantine[result.quarantine["reason_code"] == "split_list_row_defect"].iloc[0]
    assert (defect["source"], defect["member"]) == ("test_list.txt", "line 2")
    layer_codes = {code: 0 for code in QUARANTINE_REASONS if code.startswith("layer_")}  # no layer in this run
    assert result.quarantine_reasons() == {**dict.fromkeys(QUARANTINE_REASONS, 1), "image_in_no_split_list": 2,
                                           **layer_codes}  # fmt: skip
    assert set(QUARANTINE_KINDS) == set(QUARANTINE_REASONS)


def test_absent_images_are_a_subset_not_an_error(mismatches: Any) -> None:
    result, _ = mismatches
    assert reasons_of(result.subset) == {
        "data_entry_rows": ["00000005_000.png"],
        "bboxes": ["00000005_000.png", "00000007_000.png"],
        "train_val_entries": ["00000005_000.png", "00000008_000.png"],
    }
    assert result.subset_counts() == {
        "data_entry_rows": 1, "bboxes": 2, "train_val_entries": 2, "test_entries": 0, "layer_rows": 0
    }  # fmt: skip
    assert set(result.subset["reason"]) == {
        "Data_Entry row: image not in this source (subset)",
        "box: image not in this source (subset)",
        f"box: image not in this source (subset); not in {ENTRY} either",
        "train_val list entry: image not in this source (subset)",
        f"train_val list entry: image not in this source (subset); not in {ENTRY} either",
    }
    assert "(subset)" not in " ".join(result.quarantine["reason"])


def test_quarantined_images_and_rows_are_counted_apart_from_what_the_source_lacks(mismatches: Any) -> None:
    result, _ = mismatches
    summary = accounting_summary(result.quarantine_reasons(), result.subset_counts())
    assert summary == {
        "quarantined_by_kind": {"images": 6, "box_rows": 3, "split_list_rows": 2, "layer_rows": 0},
        "not_in_source": {"data_entry_rows": 1, "boxes": 2, "split_list_names": 2, "layer_rows": 0},
    }
    assert sum(summary["quarantined_by_kind"].values()) == len(result.quarantine)
    assert sum(summary["not_in_source"].values()) == len(result.subset)
    assert accounting_lines(summary) == [
        "quarantined: 6 images, 3 box rows, 2 split-list rows",
        "not in this source (subset): 2 split-list names, 2 boxes, 1 Data_Entry row",
    ]
    big = {"quarantined_by_kind": {"images": 2, "box_rows": 1}, "not_in_source": {"split_list_names": 94143}}
    assert accounting_lines(big) == [
        "quarantined: 2 images, 1 box row",
        "not in this source (subset): 94,143 split-list names",
    ]
    assert accounting_lines({}) == ["quarantined: none", "not in this source (subset): none"]


def test_every_row_and_image_is_accounted_for_once(mismatches: Any) -> None:
    result, box = mismatches
    assert list(result.frame["image_index"]) == ["00000001_000.png", "00000002_000.png"]
    assert list(result.frame["shard"]) == ["images_001.zip", "images_001.zip"]
    images = result.quarantine[~result.quarantine["source"].str.endswith((".csv", ".txt"))]
    explained = set(result.frame["image_index"]) | set(images["image_index"]) | set(result.subset["image_index"])
    assert {f"0000000{i}_000.png" for i in range(1, 6)} <= explained
    box_rows = result.quarantine[result.quarantine["source"] == "BBox_List_2017.csv"]
    boxes_seen = len(box_rows[box_rows["reason_code"] != "bbox_row_defect"])  # that row is not in ``box`` any more
    boxes_seen += len(result.subset[result.subset["reason_code"] == "bboxes"])
    attached = attach_bboxes(result.frame, box)
    assert boxes_seen + sum(len(b) for b in attached["bboxes"]) == len(box)


def test_report_and_summary_say_what_happened(mismatches: Any) -> None:
    result, _ = mismatches
    report = json.loads(json.dumps(result.report()))
    assert report["publishable_images"] == 2
    assert report["quarantined"] == 11
    assert report["quarantined_by_kind"] == {"images": 6, "box_rows": 3, "split_list_rows": 2, "layer_rows": 0}
    assert report["not_in_source"] == {"data_entry_rows": 1, "boxes": 2, "split_list_names": 2, "layer_rows": 0}
    assert report["quarantine"]["image_without_row"]["count"] == 1
    assert report["quarantine"]["image_without_row"]["examples"][0]["member"] == "images/00000009_000.png"
    assert report["subset"]["bboxes"]["reason"] == SUBSET_REASONS["bboxes"]
    assert "test_entries" not in report["subset"]
    text = result.summary_text()
    assert text.startswith(
        "cross-check: 2 images publishable; quarantined: 6 images, 3 box rows, 2 split-list rows; "
        "not in this source (subset): 2 split-list names, 2 boxes, 1 Data_Entry row"
    )
    assert "quarantined 1: image has no Data_Entry row" in text
    assert "subset 2: box: image not in this source (subset)" in text


def test_a_partial_download_of_real_metadata_is_a_subset() -> None:
    entry = load_data_entry(DATA_ENTRY_FILE.read_bytes(), DATA_ENTRY_FILE.name).frame
    table = load_bboxes(BBOX_FILE.read_bytes(), BBOX_FILE.name)
    rejected = validate_bboxes(table, set(entry["image_index"])).defects  # the mirror's appended two-label row
    assert rejected is not None
    real_boxes = table.frame[~pd.Series(table.line_numbers(), index=table.frame.index).isin(rejected["line"])]
    names = [path.name for path in IMAGES]
    raw = pd.DataFrame([landed(name) for name in names])
    first = list(entry["image_index"])
    lists = {"train_val": first[:1500], "test": first[1500:]}
    result = reconcile(raw, Curated(entry, DATA_ENTRY_FILE.name, real_boxes, lists, rejected=rejected))
    assert sorted(result.frame["image_index"]) == names
    pd.testing.assert_frame_equal(
        result.frame[entry.columns],
        entry[entry["image_index"].isin(names)].sort_values("image_index", ignore_index=True),
    )  # the published rows are the source rows, value for value
    assert len(real_boxes) == 984
    assert not real_boxes["image_index"].isin(names).any()  # no box of these 8 images
    assert result.subset_counts() == {
        "data_entry_rows": 2000 - len(names),
        "bboxes": 984,  # 965 of them name images this excerpt of Data_Entry does not list either: still a subset
        "train_val_entries": 1500 - len(names),
        "test_entries": 500,
        "layer_rows": 0,
    }
    assert result.quarantine_reasons() == {**dict.fromkeys(QUARANTINE_REASONS, 0), "bbox_row_defect": 1}
    bad = result.quarantine.iloc[0]
    assert (bad["source"], bad["member"], bad["image_index"]) == (BBOX_FILE.name, "line 986", "00000001_001.png")
    assert "'Cardiomegaly|Emphysema'" in bad["reason"]


def test_without_lists_or_boxes_nothing_is_checked_against_them() -> None:
    raw = pd.DataFrame([landed("00000001_000.png"), landed("00000002_000.png")])
    result = reconcile(raw, Curated(entry_rows("00000001_000.png", "00000002_000.png"), ENTRY))
    assert len(result.frame) == 2
    assert len(result.quarantine) == 0
    assert len(result.subset) == 0
    assert attach_bboxes(result.frame, None)["bboxes"].tolist() == [[], []]


def test_attach_bboxes_groups_boxes_per_image() -> None:
    frame = entry_rows("00000001_000.png", "00000002_000.png")
    box = boxes("00000001_000.png", "00000001_000.png").assign(label=["Mass", "Nodule"])
    attached = attach_bboxes(frame, box)
    assert [b["label"] for b in attached["bboxes"][0]] == ["Mass", "Nodule"]
    assert attached["bboxes"][0][0] == {"label": "Mass", "x": 10.0, "y": 10.0, "w": 10.0, "h": 10.0}
    assert attached["bboxes"][1] == []


def test_no_landed_images_at_all() -> None:
    empty = pd.DataFrame(columns=["image_index", "status"])
    result = reconcile(empty, Curated(entry_rows("00000001_000.png"), ENTRY, boxes("00000001_000.png")))
    assert len(result.frame) == 0
    assert result.subset_counts()["data_entry_rows"] == 1
    assert result.subset_counts()["bboxes"] == 1
