"""Each layer row joins its published image, or is quarantined with its reason, or counted as not in the source."""

from __future__ import annotations

import pandas as pd

from pipeline.layers.schema import EXPERT_FIELDS, Layer, LayerFile
from pipeline.plan.annotations import join_layers

GOOGLE = Layer("google", "expert_labels", "google2019", (LayerFile("t.csv", "/s/t.csv", "a" * 64, 4),), EXPERT_FIELDS)


def _rows(names: list[str]) -> pd.DataFrame:
    n = len(names)
    return pd.DataFrame(
        {
            "image_index": names,
            "fracture": pd.array([True] * n, dtype="boolean"),
            "pneumothorax": pd.array([None] * n, dtype="boolean"),
            "airspace_opacity": pd.array([False] * n, dtype="boolean"),
            "nodule_or_mass": pd.array([True] * n, dtype="boolean"),
            "set_id": ["test"] * n,
            "source_file": "t.csv",
            "line": list(range(2, n + 2)),
        }
    )


def test_rows_are_joined_quarantined_or_counted_as_absent_and_splits_are_untouched() -> None:
    frame = pd.DataFrame({"image_index": ["a.png", "b.png"], "split": ["train", "test"]})
    table = _rows(["a.png", "unknown.png", "absent.png", "held.png", "nowhere.png"])
    known = {"a.png", "b.png", "absent.png", "held.png"}
    present = {"a.png", "b.png", "unknown.png", "held.png"}
    joined = join_layers(frame, [(GOOGLE, table)], known, present)
    column = joined.frame["layer__google"].tolist()
    assert column[0] == {"fracture": True, "pneumothorax": None, "airspace_opacity": False, "nodule_or_mass": True,
                         "set_id": "test"}  # fmt: skip
    assert column[1] is None
    assert joined.frame["split"].tolist() == ["train", "test"]
    quarantine = pd.concat(joined.quarantine)
    assert dict(zip(quarantine["image_index"], quarantine["reason_code"], strict=True)) == {
        "unknown.png": "layer_row_without_row",
        "nowhere.png": "layer_row_without_row",  # neither in Data_Entry nor in an archive: still not an NIH image
        "held.png": "layer_row_image_quarantined",
    }
    assert quarantine.set_index("image_index").loc["unknown.png", "member"] == "line 3"
    assert "(layer google)" in quarantine.set_index("image_index").loc["held.png", "reason"]
    subset = pd.concat(joined.subset)
    assert subset["image_index"].tolist() == ["absent.png"]
    assert subset["reason_code"].tolist() == ["layer_rows"]


def test_no_layers_leaves_the_plan_as_it_is() -> None:
    frame = pd.DataFrame({"image_index": ["a.png"]})
    joined = join_layers(frame, [], {"a.png"}, {"a.png"})
    assert joined.frame.columns.tolist() == ["image_index"]
    assert not joined.quarantine
    assert not joined.layers
