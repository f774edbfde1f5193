"""The ``--annotations`` syntax, layer ids, the struct each layer becomes and its values per image."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.convert.schema import column_names
from pipeline.errors import UsageError
from pipeline.layers.schema import (
    BOX_FIELDS,
    EXPERT_FIELDS,
    LABEL_VERSION_FIELDS,
    Layer,
    LayerField,
    LayerFile,
    check_layer_ids,
    image_values,
    parse_annotations,
    struct_type,
)


def test_the_same_id_twice_joins_two_files_into_one_layer() -> None:
    given = ["google=test_labels.csv", "google=s3://b/validation_labels.csv", "v2017 = Data_Entry_2017.csv"]
    assert parse_annotations(given) == {
        "google": ("test_labels.csv", "s3://b/validation_labels.csv"),
        "v2017": ("Data_Entry_2017.csv",),
    }
    assert parse_annotations(None) == {}
    assert parse_annotations(["q=http://h/x.csv?a=b"]) == {"q": ("http://h/x.csv?a=b",)}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("google", "is not ID=LOCATION"),
        ("google=", "is not ID=LOCATION"),
        ("Google=x.csv", "annotation layer id 'Google'"),
        ("1st=x.csv", "annotation layer id '1st'"),
        ("a-b=x.csv", "must be a lower-case letter"),
        ("ﬁx=x.csv", "must be a lower-case letter"),
    ],
)
def test_a_malformed_item_is_a_usage_error_naming_it(item: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_annotations([item])


def test_a_file_named_twice_for_one_layer_is_refused() -> None:
    with pytest.raises(UsageError, match=r"names a\.csv twice"):
        parse_annotations(["g=a.csv", "g=a.csv"])


def test_a_layer_may_not_take_a_column_name_of_the_release() -> None:
    check_layer_ids(["google", "v2017"], column_names())
    for taken in ("labels", "split", "bboxes", "image", "pneumothorax"):
        with pytest.raises(UsageError, match=f"'{taken}' already name"):
            check_layer_ids([taken], column_names())


def _layer(kind: str, fields: tuple[LayerField, ...]) -> Layer:
    return Layer("x", kind, "v", (LayerFile("f.csv", "/s/f.csv", "0" * 64, 3),), fields)


def test_struct_types_follow_the_fields() -> None:
    google = struct_type(_layer("expert_labels", EXPERT_FIELDS))
    assert [f.name for f in google] == ["fracture", "pneumothorax", "airspace_opacity", "nodule_or_mass", "set_id"]
    assert google.field("fracture").type == pa.bool_()
    assert google.field("set_id").type == pa.string()
    labels = struct_type(_layer("label_version", LABEL_VERSION_FIELDS))
    assert labels.field("labels").type == pa.list_(pa.string())
    assert labels.num_fields == 16
    assert struct_type(_layer("boxes", BOX_FIELDS)).field("bboxes").type.value_type.names == [
        "label",
        "x",
        "y",
        "w",
        "h",
    ]


def test_layer_round_trips_through_its_dict() -> None:
    layer = _layer("expert_labels", EXPERT_FIELDS)
    assert Layer.from_dict(layer.to_dict()) == layer


def test_image_values_keep_nulls_and_group_boxes_in_file_order() -> None:
    google = _layer("expert_labels", EXPERT_FIELDS)
    frame = pd.DataFrame(
        {
            "image_index": ["a.png", "b.png"],
            "fracture": pd.array([True, None], dtype="boolean"),
            "pneumothorax": pd.array([False, True], dtype="boolean"),
            "airspace_opacity": pd.array([None, None], dtype="boolean"),
            "nodule_or_mass": pd.array([True, False], dtype="boolean"),
            "set_id": ["test", None],
        }
    )
    values = image_values(google, frame)
    assert values["a.png"] == {"fracture": True, "pneumothorax": False, "airspace_opacity": None,
                               "nodule_or_mass": True, "set_id": "test"}  # fmt: skip
    assert values["b.png"]["fracture"] is None
    assert values["b.png"]["set_id"] is None
    boxes = pd.DataFrame(
        {"image_index": ["a.png", "b.png", "a.png"], "label": ["Mass", "Nodule", "Edema"], "x": [1.0, 2.0, 3.0],
         "y": [1.0, 2.0, 3.0], "w": [4.0, 5.0, 6.0], "h": [7.0, 8.0, 9.0]}
    )  # fmt: skip
    grouped = image_values(_layer("boxes", BOX_FIELDS), boxes)
    assert [b["label"] for b in grouped["a.png"]["bboxes"]] == ["Mass", "Edema"]
    assert grouped["b.png"] == {"bboxes": [{"label": "Nodule", "x": 2.0, "y": 2.0, "w": 5.0, "h": 8.0}]}
