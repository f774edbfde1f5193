"""Cross-file checks: every image, Data_Entry row, box and list entry is published, quarantined or reported."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from pipeline.crosscheck import (
    QUARANTINE_COLUMNS,
    QUARANTINE_REASONS,
    SUBSET_REASONS,
    Curated,
    attach_bboxes,
    reconcile,
)
from pipeline.metadata import load_bboxes, load_data_entry
from pipeline.nih import BBOX_LABELS
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


@pytest.fixture(scope="module")
def mismatches() -> Any:
    raw = pd.DataFrame([
        landed("00000001_000.png"),
        landed("00000002_000.png"),
        landed("00000002_000.png", shard="images_002.zip"),
        landed("00000003_000.png", status="quarantined", reason="PNG CRC mismatch in a IDAT chunk at byte 33"),
        landed("README.txt", status="skipped", reason="name is not NNNNNNNN_NNN.png"),
        landed("00000004_000.png"),
        landed("00000009_000.png"),
    ])  # fmt: skip
    entry = entry_rows("00000001_000.png", "00000002_000.png", "00000003_000.png", "00000004_000.png",
                       "00000005_000.png")  # fmt: skip
    box = boxes("00000001_000.png", "00000003_000.png", "00000005_000.png", "00000007_000.png")
    lists = {
        "train_val": ["00000001_000.png", "00000002_000.png", "00000005_000.png", "00000008_000.png"],
        "test": ["00000003_000.png"],
    }
    return reconcile(raw, Curated(entry, ENTRY, box, lists)), box


def test_each_mismatch_is_quarantined_with_its_reason(mismatches: Any) -> None:
    result, _ = mismatches
    assert list(result.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert reasons_of(result.quarantine) == {
        "rejected_at_extraction": ["00000003_000.png"],
        "not_an_image_name": ["README.txt"],
        "duplicate_image": ["00000002_000.png"],
        "image_without_row": ["00000009_000.png"],
        "image_in_no_split_list": ["00000004_000.png"],
        "bbox_without_row": ["00000007_000.png"],
        "bbox_image_quarantined": ["00000003_000.png"],
        "list_entry_without_row": ["00000008_000.png"],
    }
    reason = dict(zip(result.quarantine["reason_code"], result.quarantine["reason"], strict=True))
    assert reason["rejected_at_extraction"] == "PNG CRC mismatch in a IDAT chunk at byte 33"
    assert reason["image_without_row"] == f"image has no Data_Entry row ({ENTRY})"
    assert reason["duplicate_image"].endswith("(images_001.zip)")
    assert reason["image_in_no_split_list"] == "image is in neither train_val_list.txt nor test_list.txt"
    assert reason["list_entry_without_row"] == f"train_val_list.txt entry whose image has no Data_Entry row ({ENTRY})"
    box = result.quarantine[result.quarantine["reason_code"] == "bbox_without_row"].iloc[0]
    assert (box["source"], box["member"]) == ("BBox_List_2017.csv", "line 5")
    assert result.quarantine_reasons() == dict.fromkeys(QUARANTINE_REASONS, 1)


def test_absent_images_are_a_subset_not_an_error(mismatches: Any) -> None:
    result, _ = mismatches
    assert reasons_of(result.subset) == {
        "data_entry_rows": ["00000005_000.png"],
        "bboxes": ["00000005_000.png"],
        "train_val_entries": ["00000005_000.png"],
    }
    assert result.subset_counts() == {"data_entry_rows": 1, "bboxes": 1, "train_val_entries": 1, "test_entries": 0}
    assert set(result.subset["reason"]) == {
        "Data_Entry row: image not in this source (subset)",
        "box: image not in this source (subset)",
        "train_val list entry: image not in this source (subset)",
    }
    assert "(subset)" not in " ".join(result.quarantine["reason"])


def test_every_row_and_image_is_accounted_for_once(mismatches: Any) -> None:
    result, box = mismatches
    assert list(result.frame["image_index"]) == ["00000001_000.png", "00000002_000.png"]
    assert list(result.frame["shard"]) == ["images_001.zip", "images_001.zip"]
    images = result.quarantine[~result.quarantine["source"].str.endswith((".csv", ".txt"))]
    explained = set(result.frame["image_index"]) | set(images["image_index"]) | set(result.subset["image_index"])
    assert {f"0000000{i}_000.png" for i in range(1, 6)} <= explained
    boxes_seen = len(result.quarantine[result.quarantine["source"] == "BBox_List_2017.csv"])
    boxes_seen += len(result.subset[result.subset["reason_code"] == "bboxes"])
    attached = attach_bboxes(result.frame, box)
    assert boxes_seen + sum(len(b) for b in attached["bboxes"]) == len(box)


def test_report_and_summary_say_what_happened(mismatches: Any) -> None:
    result, _ = mismatches
    report = json.loads(json.dumps(result.report()))
    assert report["publishable_images"] == 2
    assert report["quarantined"] == 8
    assert report["quarantine"]["image_without_row"]["count"] == 1
    assert report["quarantine"]["image_without_row"]["examples"][0]["member"] == "images/00000009_000.png"
    assert report["subset"]["bboxes"]["reason"] == SUBSET_REASONS["bboxes"]
    assert "test_entries" not in report["subset"]
    text = result.summary_text()
    assert text.startswith("cross-check: 2 images publishable, 8 items quarantined")
    assert "quarantined 1: image has no Data_Entry row" in text
    assert "subset 1: box: image not in this source (subset)" in text


def test_a_partial_download_of_real_metadata_is_a_subset() -> None:
    entry = load_data_entry(DATA_ENTRY_FILE.read_bytes(), DATA_ENTRY_FILE.name).frame
    real_boxes = load_bboxes(BBOX_FILE.read_bytes(), BBOX_FILE.name).frame
    real_boxes = real_boxes[real_boxes["label"].isin(BBOX_LABELS)]  # the planted bad last row is blocked earlier
    names = [path.name for path in IMAGES]
    raw = pd.DataFrame([landed(name) for name in names])
    first = list(entry["image_index"])
    lists = {"train_val": first[:1500], "test": first[1500:]}
    result = reconcile(raw, Curated(entry, DATA_ENTRY_FILE.name, real_boxes, lists))
    assert sorted(result.frame["image_index"]) == names
    pd.testing.assert_frame_equal(
        result.frame[entry.columns],
        entry[entry["image_index"].isin(names)].sort_values("image_index", ignore_index=True),
    )  # the published rows are the source rows, value for value
    in_entry = real_boxes["image_index"].isin(entry["image_index"])
    assert result.subset_counts() == {
        "data_entry_rows": 2000 - len(names),
        "bboxes": int(in_entry.sum()),
        "train_val_entries": 1500 - len(names),
        "test_entries": 500,
    }
    # this excerpt has 2,000 of the 112,120 rows: boxes of the other images name no Data_Entry row
    assert result.quarantine_reasons() == {**dict.fromkeys(QUARANTINE_REASONS, 0), "bbox_without_row": 965}
    assert int(in_entry.sum()) == 984 - 965


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
