"""What changed in a layer between two releases: images added to or removed from it, values changed, as short text."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline import nih
from pipeline.layers import changes
from pipeline.layers.schema import BOX_FIELDS, EXPERT_FIELDS, LABEL_VERSION_FIELDS, Layer, LayerFile, struct_type


def _layer(kind: str, fields: Any) -> Layer:
    return Layer("lay", kind, "test", (LayerFile("f.csv", "/f.csv", "0" * 64, 1),), tuple(fields))


def _table(layer: Layer | None, rows: dict[str, dict[str, Any] | None]) -> pa.Table:
    columns: dict[str, Any] = {"image_index": pa.array(list(rows), type=pa.string())}
    if layer is not None:
        columns[layer.id] = pa.array(list(rows.values()), type=struct_type(layer))
    return pa.table(columns)


EXPERT = _layer("expert_labels", EXPERT_FIELDS)


def _expert(ptx: bool | None, set_id: str = "test") -> dict[str, Any]:
    return {"fracture": None, "pneumothorax": ptx, "airspace_opacity": False, "nodule_or_mass": False, "set_id": set_id}


def test_added_removed_and_changed_images_of_a_layer() -> None:
    old = _table(EXPERT, {"a.png": _expert(True), "b.png": _expert(False), "c.png": _expert(None), "d.png": None})
    new = _table(EXPERT, {"a.png": _expert(True), "b.png": _expert(True, "val"), "c.png": None, "d.png": _expert(None)})
    change = changes.layer_changes(old, new, "lay")
    assert change.counts() == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    assert (change.added, change.removed) == (["d.png"], ["c.png"])
    assert change.changed == [
        changes.ValueChange("b.png", "pneumothorax=false; set_id=test", "pneumothorax=true; set_id=val")
    ]
    assert change.to_json(limit=0)["counts"]["changed"] == 1
    assert change.to_json(limit=0)["changed"] == []


def test_a_layer_missing_from_one_release_covers_nothing_there() -> None:
    new = _table(EXPERT, {"a.png": _expert(True), "b.png": None})
    change = changes.layer_changes(_table(None, {"a.png": None, "b.png": None}), new, "lay")
    assert (change.in_old, change.in_new) == (False, True)
    assert change.counts() == {"added": 1, "removed": 0, "changed": 0, "unchanged": 0}
    gone = changes.layer_changes(new, _table(None, {"a.png": None}), "lay")
    assert (gone.removed, gone.in_new) == (["a.png"], False)


VERSION = _layer("label_version", LABEL_VERSION_FIELDS)


def _version(labels: list[str]) -> dict[str, Any]:
    value: dict[str, Any] = {"labels": labels}
    return value | {nih.finding_column(label): label in labels for label in nih.LABELS}


def test_a_relabel_shows_the_label_sets_not_the_booleans_they_imply() -> None:
    old = _table(VERSION, {"a.png": _version(["Effusion", "Mass"]), "b.png": _version(["No Finding"])})
    new = _table(VERSION, {"a.png": _version(["Mass", "Effusion"]), "b.png": _version(["Hernia"])})
    change = changes.layer_changes(old, new, "lay")
    assert change.unchanged == 1, "the same labels in another order are no change"
    assert change.changed == [changes.ValueChange("b.png", "labels=No Finding", "labels=Hernia")]


def test_a_boolean_that_disagrees_with_the_labels_is_shown_beside_them() -> None:
    odd = _version(["Mass"]) | {"effusion": True}
    change = changes.layer_changes(
        _table(VERSION, {"a.png": _version(["No Finding"])}), _table(VERSION, {"a.png": odd}), "lay"
    )
    assert change.changed[0].after == "labels=Mass; effusion=true"


BOXES = _layer("boxes", BOX_FIELDS)


def _box(label: str, x: float) -> dict[str, Any]:
    return {"label": label, "x": x, "y": 2.0, "w": 3.5, "h": 4.0}


def test_boxes_in_another_order_are_unchanged_and_moved_boxes_are_shown() -> None:
    old = _table(
        BOXES, {"a.png": {"bboxes": [_box("Mass", 1), _box("Nodule", 2)]}, "b.png": {"bboxes": [_box("Mass", 1)]}}
    )
    new = _table(
        BOXES, {"a.png": {"bboxes": [_box("Nodule", 2), _box("Mass", 1)]}, "b.png": {"bboxes": [_box("Mass", 7)]}}
    )
    change = changes.layer_changes(old, new, "lay")
    assert change.unchanged == 1
    assert change.changed == [changes.ValueChange("b.png", "bboxes=Mass@1,2,3.5,4", "bboxes=Mass@7,2,3.5,4")]


def test_long_values_are_cut_to_a_short_text() -> None:
    many = {"bboxes": [_box("Mass", float(i)) for i in range(40)]}
    change = changes.layer_changes(_table(BOXES, {"a.png": None}), _table(BOXES, {"a.png": many}), "lay")
    assert change.added == ["a.png"]
    text = changes.value_text(many, ["bboxes"])
    assert len(text) == changes.TEXT_LIMIT
    assert text.endswith("…")
