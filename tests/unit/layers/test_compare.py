"""A layer against the primary labels, as the card states it: coverage, 2x2 tables with Cohen's kappa, relabels, sets.

The metadata frames are built as a release's ``metadata.parquet`` reads back (an Arrow table with the layer's struct
column, ``to_pandas()``), so a layer value is a dict and an image the layer does not cover holds None.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from pipeline import nih
from pipeline.layers import compare
from pipeline.layers.schema import (
    BOX_FIELDS,
    EXPERT_FIELDS,
    LABEL_VERSION_FIELDS,
    Layer,
    LayerField,
    LayerFile,
    struct_type,
)

PRIMARY = [nih.finding_column(label) for label in nih.LABELS]


def _layer(layer_id: str, kind: str, fields: tuple[LayerField, ...]) -> Layer:
    return Layer(layer_id, kind, "test", (LayerFile(f"{layer_id}.csv", f"/src/{layer_id}.csv", "c" * 64, 3),), fields)


def _row(i: int, labels: list[str], split: str = "test") -> dict[str, Any]:
    row: dict[str, Any] = {"image_index": f"{i:08d}_000.png", "split": split, "labels": labels}
    row |= {col: label in labels for col, label in zip(PRIMARY, nih.LABELS, strict=True)}
    return row


def _meta(layer: Layer, rows: list[dict[str, Any]], values: list[dict[str, Any] | None]) -> Any:
    schema = pa.schema(
        [("image_index", pa.string()), ("split", pa.string()), ("labels", pa.list_(pa.string())),
         *[(col, pa.bool_()) for col in PRIMARY], (layer.id, struct_type(layer))]
    )  # fmt: skip
    full = [{**row, layer.id: value} for row, value in zip(rows, values, strict=True)]
    return pa.Table.from_pylist(full, schema=schema).to_pandas()


def _two_by_two(a: int, b: int, c: int, d: int) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """Rows and layer values (field ``pneumothorax``) giving the table a/b/c/d."""
    cells = [(True, True)] * a + [(True, False)] * b + [(False, True)] * c + [(False, False)] * d
    rows = [_row(i, ["Pneumothorax"] if primary else ["No Finding"]) for i, (_, primary) in enumerate(cells)]
    return rows, [{"pneumothorax": mine, "note": None} for mine, _ in cells]


GENERIC = _layer("relabel", "generic", (LayerField("pneumothorax", "bool"), LayerField("note", "string")))


def test_hand_computed_two_by_two_gives_agreement_and_kappa_exactly() -> None:
    rows, values = _two_by_two(40, 10, 5, 45)
    result = compare.compare_layer(GENERIC, _meta(GENERIC, rows, values))
    (agreement,) = result.agreements
    assert (agreement.both, agreement.layer_only, agreement.primary_only, agreement.neither) == (40, 10, 5, 45)
    assert agreement.agreement == 0.85
    assert agreement.kappa == 0.7  # po 0.85, pe (50*45 + 50*55) / 100^2 = 0.5
    text = "\n".join(compare.render_section(result))
    assert "| `pneumothorax` | Pneumothorax | 40 | 10 | 5 | 45 | 85.0% | 0.700 |" in text
    assert result.no_counterpart == ()


def test_uncovered_images_and_null_values_are_left_out_of_the_table() -> None:
    rows, values = _two_by_two(3, 1, 1, 3)
    rows += [_row(100, ["Pneumothorax"]), _row(101, ["No Finding"], "train")]
    values += [{"pneumothorax": None, "note": "unread"}, None]
    result = compare.compare_layer(GENERIC, _meta(GENERIC, rows, values))
    assert result.agreements[0].images == 8
    assert result.images_covered == 9  # the unread image is covered; the train image is not
    by_split = {c.split: (c.images, c.split_images) for c in result.coverage}
    assert by_split == {"train": (0, 1), "val": (0, 0), "test": (9, 9)}
    text = "\n".join(compare.render_section(result))
    assert "| train | 0 | 0.0% |\n" in text
    assert "| val | 0 | n/a |\n" in text
    assert "| **all** | 9 | 90.0% |\n" in text


def test_kappa_is_not_a_number_when_both_raters_say_the_same_of_every_image() -> None:
    assert compare.cohen_kappa(10, 0, 0, 0) is None
    assert compare.cohen_kappa(0, 0, 0, 0) is None
    assert compare.cohen_kappa(0, 5, 5, 0) == -1.0
    rows, values = _two_by_two(0, 0, 0, 6)
    text = "\n".join(compare.render_section(compare.compare_layer(GENERIC, _meta(GENERIC, rows, values))))
    assert "| `pneumothorax` | Pneumothorax | 0 | 0 | 0 | 6 | 100.0% | n/a |" in text


EXPERT = _layer("google", "expert_labels", EXPERT_FIELDS)


def _expert(fracture: bool | None, ptx: bool | None, opacity: bool | None, nodule_or_mass: bool | None,
            set_id: str | None) -> dict[str, Any]:  # fmt: skip
    return {"fracture": fracture, "pneumothorax": ptx, "airspace_opacity": opacity, "nodule_or_mass": nodule_or_mass,
            "set_id": set_id}  # fmt: skip


def test_expert_labels_compare_nodule_or_mass_with_either_primary_label_and_keep_their_sets() -> None:
    rows = [_row(1, ["Mass"]), _row(2, ["Nodule"], "val"), _row(3, ["No Finding"]), _row(4, ["Nodule", "Mass"]),
            _row(5, ["Effusion"], "train")]  # fmt: skip
    values = [
        _expert(True, False, None, True, "test"),
        _expert(False, False, True, False, "val"),
        _expert(None, True, False, True, "test"),
        _expert(False, None, False, True, None),
        None,
    ]
    result = compare.compare_layer(EXPERT, _meta(EXPERT, rows, values))
    by_field = {a.field: a for a in result.agreements}
    assert set(by_field) == {"pneumothorax", "nodule_or_mass"}
    nodule = by_field["nodule_or_mass"]
    assert (nodule.both, nodule.layer_only, nodule.primary_only, nodule.neither) == (2, 1, 1, 0)
    ptx = by_field["pneumothorax"]
    assert (ptx.both, ptx.layer_only, ptx.primary_only, ptx.neither) == (0, 1, 0, 2)
    assert result.no_counterpart == ("fracture", "airspace_opacity")
    assert result.sets is not None
    assert dict(result.sets.rows) == {"test": (0, 0, 2), "val": (0, 1, 0), "(none)": (0, 0, 1)}
    text = "\n".join(compare.render_section(result))
    assert "| `nodule_or_mass` | Nodule OR Mass | 2 | 1 | 1 | 0 |" in text
    assert "No primary counterpart, not compared: `fracture`, `airspace_opacity`." in text
    assert "| `set_id` | train | val | test | all |" in text
    assert "| `test` | 0 | 0 | 2 | 2 |" in text
    assert "| (none) | 0 | 0 | 1 | 1 |" in text
    assert result.relabelled is None
    assert "label set differs" not in text


VERSION = _layer("v2017", "label_version", LABEL_VERSION_FIELDS)


def _version_value(labels: list[str]) -> dict[str, Any]:
    value: dict[str, Any] = {"labels": labels}
    return value | {col: label in labels for col, label in zip(PRIMARY, nih.LABELS, strict=True)}


def test_label_version_counts_every_changed_label_set_and_shows_ten_in_image_order() -> None:
    rows = [_row(i, ["Effusion", "Mass"]) for i in range(14, 0, -1)] + [_row(20, ["No Finding"])]
    values: list[dict[str, Any] | None] = [_version_value(["Mass"]) for _ in range(12)]
    values += [_version_value(["Mass", "Effusion"]), _version_value(["Effusion", "Mass"])]  # same sets
    values += [_version_value(["No Finding"])]
    result = compare.compare_layer(VERSION, _meta(VERSION, rows, values))
    assert result.relabelled == 12
    assert [r.image_index for r in result.relabel_examples] == [f"{i:08d}_000.png" for i in range(3, 13)]
    assert result.relabel_examples[0] == compare.Relabel("00000003_000.png", "Effusion|Mass", "Mass")
    assert [a.field for a in result.agreements] == PRIMARY
    effusion = next(a for a in result.agreements if a.field == "effusion")
    assert (effusion.both, effusion.layer_only, effusion.primary_only, effusion.neither) == (2, 0, 12, 1)
    text = "\n".join(compare.render_section(result))
    assert "Images whose label set differs from the primary labels: **12**." in text
    assert "The first 10, by image (primary -> layer):" in text
    assert "- `00000003_000.png`: `Effusion|Mass` -> `Mass`" in text
    assert "00000013_000.png" not in text
    assert "| `no_finding` | No Finding | 1 | 0 | 0 | 14 |" in text


BOXES = _layer("boxes_extra", "boxes", BOX_FIELDS)


def _box(label: str, x: float = 1.0) -> dict[str, Any]:
    return {"label": label, "x": x, "y": 2.0, "w": 3.0, "h": 4.0}


def test_box_layer_counts_boxed_images_per_finding_and_those_the_primary_labels_lack() -> None:
    rows = [_row(1, ["Mass"]), _row(2, ["No Finding"], "train"), _row(3, ["Infiltration"]), _row(4, ["Mass"])]
    values = [
        {"bboxes": [_box("Mass"), _box("Mass", 9.0)]},
        {"bboxes": [_box("Mass"), _box("Infiltrate"), _box("Implant")]},
        {"bboxes": [_box("Infiltrate")]},
        None,
    ]
    result = compare.compare_layer(BOXES, _meta(BOXES, rows, values))
    assert result.boxes == (
        compare.BoxFinding("Implant", 1, None),
        compare.BoxFinding("Infiltrate", 2, 1),
        compare.BoxFinding("Mass", 2, 1),
    )
    assert result.agreements == ()
    assert {c.split: c.rows for c in result.coverage} == {"train": 3, "val": 0, "test": 3}
    text = "\n".join(compare.render_section(result))
    assert "| Mass | 2 | 1 |" in text
    assert "| Implant | 1 | n/a (not a primary finding) |" in text
    assert "| split | images covered | share of the split | boxes |" in text
    assert "| train | 1 | 100.0% | 3 |" in text


def test_comparison_json_carries_the_figures_the_card_shows() -> None:
    rows, values = _two_by_two(40, 10, 5, 45)
    data = json.loads(json.dumps(compare.compare_layer(GENERIC, _meta(GENERIC, rows, values)).to_json()))
    assert data["layer"] == "relabel"
    assert data["images_covered"] == 100
    assert data["agreements"][0] | {} == {
        "field": "pneumothorax", "primary": ["pneumothorax"], "both": 40, "layer_only": 10, "primary_only": 5,
        "neither": 45, "images": 100, "agreement": 0.85, "kappa": 0.7,
    }  # fmt: skip


@pytest.mark.parametrize("name", ["set", "set_id", "split"])
def test_a_generic_layer_string_field_named_like_a_set_is_crosstabbed(name: str) -> None:
    layer = _layer("team", "generic", (LayerField("effusion", "bool"), LayerField(name, "string")))
    rows = [_row(1, ["Effusion"], "train"), _row(2, ["No Finding"], "val")]
    result = compare.compare_layer(
        layer, _meta(layer, rows, [{"effusion": True, name: "a"}, {"effusion": True, name: "a"}])
    )
    assert result.sets == compare.SetCrosstab(name, ("train", "val", "test"), (("a", (1, 1, 0)),))
    assert [a.field for a in result.agreements] == ["effusion"]


def test_a_layer_absent_from_the_frame_covers_nothing() -> None:
    rows = [_row(1, ["Mass"])]
    meta = _meta(GENERIC, rows, [None]).drop(columns=["relabel"])
    result = compare.compare_layer(GENERIC, meta)
    assert result.images_covered == 0
    assert result.agreements[0].agreement is None
    assert "| `pneumothorax` | Pneumothorax | 0 | 0 | 0 | 0 | n/a | n/a |" in "\n".join(compare.render_section(result))
