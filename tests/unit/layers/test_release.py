"""A layer's release table: only published images, typed as its fields, with its provenance in the metadata."""

from __future__ import annotations

import json

import pandas as pd

from pipeline.layers.release import LAYER_METADATA_KEY, layer_table, manifest_entry, table_path
from pipeline.layers.schema import BOX_FIELDS, EXPERT_FIELDS, Layer, LayerFile

GOOGLE = Layer("google", "expert_labels", "google2019", (LayerFile("t.csv", "/s/t.csv", "a" * 64, 3),), EXPERT_FIELDS)


def _google_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_index": ["00000002_000.png", "00000001_000.png", "00000003_000.png"],
            "fracture": pd.array([True, None, False], dtype="boolean"),
            "pneumothorax": pd.array([False, True, None], dtype="boolean"),
            "airspace_opacity": pd.array([None, None, True], dtype="boolean"),
            "nodule_or_mass": pd.array([True, False, False], dtype="boolean"),
            "set_id": ["test", None, "val"],
            "patient_id": pd.array([2, 1, 3], dtype="Int64"),
            "source_file": "t.csv",
            "line": [2, 3, 4],
        }
    )


def test_the_table_holds_published_images_only_sorted_with_nulls_kept() -> None:
    table = layer_table(GOOGLE, _google_rows(), {"00000001_000.png", "00000002_000.png"})
    rows = table.to_pylist()
    assert [r["image_index"] for r in rows] == ["00000001_000.png", "00000002_000.png"]
    assert rows[0] == {"image_index": "00000001_000.png", "image_id": "00000001_000", "fracture": None,
                       "pneumothorax": True, "airspace_opacity": None, "nodule_or_mass": False, "set_id": None,
                       "source_file": "t.csv", "line": 3}  # fmt: skip
    assert "patient_id" not in table.column_names
    provenance = json.loads(table.schema.metadata[LAYER_METADATA_KEY])
    assert provenance["files"][0]["sha256"] == "a" * 64
    assert provenance["kind"] == "expert_labels"


def test_a_box_layer_has_a_row_per_box_and_the_manifest_counts_images() -> None:
    layer = Layer("boxes2", "boxes", "bbox/explicit", (LayerFile("b.csv", "b.csv", "b" * 64, 3),), BOX_FIELDS)
    rows = pd.DataFrame({"image_index": ["a.png", "a.png", "z.png"], "label": ["Mass", "Nodule", "Edema"],
                         "x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0], "w": [1.0, 2.0, 3.0], "h": [1.0, 2.0, 3.0],
                         "source_file": "b.csv", "line": [2, 3, 4]})  # fmt: skip
    table = layer_table(layer, rows, {"a.png"})
    assert table.column_names == ["image_index", "image_id", "label", "x", "y", "w", "h", "source_file", "line"]
    entry = manifest_entry(layer, table, {"images_covered": 1})
    assert (entry["rows"], entry["images_covered"], entry["table"]) == (2, 1, table_path("boxes2"))
    assert entry["schema"].startswith("struct<bboxes: list<")
