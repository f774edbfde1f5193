"""Loading a layer's files into its normalised table: every cell becomes exactly its normalised value, empty cells
null, a value outside the vocabulary a problem of its row (never a dropped row), several files one table."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd
import pytest

from pipeline import nih
from pipeline.errors import BadDataError, LayerSpecError, UnknownHeaderError, UnreadableFileError
from pipeline.layers.load import PROBLEM_COLUMN, LayerInput, LoadedLayer, load_layer, set_id_from_file_name
from pipeline.layers.schema import EXPERT_FIELDS, LABEL_VERSION_FIELDS, LayerFile

CORE = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"
ROWS = [
    ("00000001_000.png", "Cardiomegaly|Emphysema", "1", "058Y"),
    ("00000002_000.png", "No Finding", "2", "81"),
    ("00000003_001.png", "Pleural_Thickening|Mass|Nodule", "003", "74"),
]
LABEL_HEADERS = {
    "bracketed-trailing-comma": (CORE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],",
                                 ",2682,2749,0.143,0.143,"),
    "explicit": (CORE + ",OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,"
                 "OriginalImagePixelSpacing_y", ",2500,2048,0.168,0.168"),
    "no-size": (CORE, ""),
    "underscore": (CORE.replace(" ", "_").replace("-up", "_Up"), ""),
}  # fmt: skip
EXPERT_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,Airspace opacity,"
    "Nodule or mass,Set Id"
)


def one(name: str, text: str, spec: dict[str, Any] | None = None, layer_id: str = "layer") -> LoadedLayer:
    files = [LayerInput(name, f"/data/{name}", text.encode())]
    given = LayerInput(name + ".layer.json", f"/data/{name}.layer.json", json.dumps(spec).encode()) if spec else None
    return load_layer(layer_id, files, given)


def values(frame: pd.DataFrame, column: str) -> list[Any]:
    return [None if v is pd.NA else v for v in frame[column].tolist()]


@pytest.mark.parametrize("variant", sorted(LABEL_HEADERS))
def test_a_label_version_keeps_each_image_labels_exactly(variant: str) -> None:
    header, size = LABEL_HEADERS[variant]
    text = header + "\n" + "".join(f"{i},{labels},0,{p},{age},M,PA{size}\n" for i, labels, p, age in ROWS)
    loaded = one("Data_Entry_2017.csv", text.replace("No Finding", "No_Finding") if variant == "underscore" else text)
    table = loaded.table
    assert loaded.layer.kind == "label_version"
    assert loaded.layer.variant == f"data_entry/{variant}"
    assert loaded.layer.fields == LABEL_VERSION_FIELDS
    assert list(table.columns) == ["image_index", *loaded.layer.field_names, "patient_id", "source_file", "line",
                                   PROBLEM_COLUMN]  # fmt: skip
    assert table["image_index"].tolist() == [r[0] for r in ROWS]
    assert table["labels"].tolist() == [["Cardiomegaly", "Emphysema"], ["No Finding"], ["Pleural_Thickening", "Mass",
                                        "Nodule"]]  # fmt: skip
    for label in nih.LABELS:
        expected = [label in r[1].split("|") for r in ROWS]
        assert table[nih.finding_column(label)].tolist() == expected, label
        assert table[nih.finding_column(label)].dtype == bool
    assert values(table, "patient_id") == [1, 2, 3]
    assert str(table["patient_id"].dtype) == "Int64"
    assert table["line"].tolist() == [2, 3, 4]
    assert set(table["source_file"]) == {"Data_Entry_2017.csv"}
    assert values(table, PROBLEM_COLUMN) == [None, None, None]
    if variant == "underscore":
        assert loaded.notes["Data_Entry_2017.csv"]["no_finding_underscore"] == 1
        assert loaded.layer.notes["no_finding_underscore"] == 1


def test_a_label_version_patient_id_that_is_not_a_number_is_a_problem_of_its_row() -> None:
    loaded = one("v.csv", f"{CORE}\n00000001_000.png,Mass,0,x1,40,M,PA\n00000002_000.png,Mass,0,,40,M,PA\n")
    assert values(loaded.table, "patient_id") == [None, None]
    assert values(loaded.table, PROBLEM_COLUMN) == ["Patient ID 'x1' is not a number", None]


def expert(
    rows: list[str], header: str = EXPERT_HEADER, name: str = "google2019_nih-chest-xray-labels.csv"
) -> LoadedLayer:
    return one(name, header + "\n" + "\n".join(rows) + "\n", layer_id="google")


def test_google_expert_labels_round_trip_yes_no_empty_and_set_id() -> None:
    loaded = expert([
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,NO,YES,NO,YES,test",
        "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.168,0.168,yes,No,,NO,val",
        "00000003_001.png,Mass,1,3,74,F,AP,2500,2048,0.168,0.168,,,,,validation",
        "00000004_000.png,Mass,0,4,74,F,AP,2500,2048,0.168,0.168,NO,NO,NO,NO,",
    ])  # fmt: skip
    table, layer = loaded.table, loaded.layer
    assert (layer.kind, layer.variant, layer.fields) == ("expert_labels", "google2019", EXPERT_FIELDS)
    assert list(table.columns) == ["image_index", *layer.field_names, "patient_id", "source_file", "line",
                                   PROBLEM_COLUMN]  # fmt: skip
    assert values(table, "fracture") == [False, True, None, False]
    assert values(table, "pneumothorax") == [True, False, None, False]
    assert values(table, "airspace_opacity") == [False, None, None, False]
    assert values(table, "nodule_or_mass") == [True, False, None, False]
    assert values(table, "set_id") == ["test", "val", "val", None]
    assert values(table, "patient_id") == [1, 2, 3, 4]
    assert {str(table[f].dtype) for f in ("fracture", "pneumothorax", "airspace_opacity", "nodule_or_mass")} == {
        "boolean"
    }
    assert values(table, PROBLEM_COLUMN) == [None] * 4
    assert layer.notes == {"expert_values_not_upper_case": 2, "set_id_validation_read_as_val": 1}
    assert "Majkowska" in layer.citation
    assert layer.licence == ""


def test_an_expert_cell_that_is_not_yes_or_no_is_null_with_its_problem() -> None:
    loaded = expert(
        ["00000001_000.png,MAYBE,NO,no,x,train", "00000002_000.png,NO,NO,NO,NO,test"],
        header="Image Index,Fracture,Pneumothorax,Airspace Opacity,Nodule/Mass,Set Id",
    )
    assert values(loaded.table, "fracture") == [None, False]
    assert values(loaded.table, PROBLEM_COLUMN) == [
        "Fracture 'MAYBE' is not YES or NO; Nodule or mass 'x' is not YES or NO; Set Id 'train' is not test or val",
        None,
    ]
    assert values(loaded.table, "patient_id") == [None, None]  # no Patient ID column


@pytest.mark.parametrize(
    ("name", "set_id"),
    [
        ("test_labels.csv", "test"),
        ("four_findings_expert_labels_validation_labels.csv", "val"),
        ("val.csv", "val"),
        ("google2019_nih-chest-xray-labels.csv", None),
        ("test_and_validation.csv", None),
        ("latest_labels.csv", None),
    ],
)
def test_without_a_set_id_column_the_file_name_gives_the_set_when_it_says_so(name: str, set_id: str | None) -> None:
    assert set_id_from_file_name(name) == set_id
    loaded = expert(["00000001_000.png,1,NO,NO,NO,NO"], "Image Index,Patient ID,Fracture,Pneumothorax,"
                    "Airspace opacity,Nodule or mass", name)  # fmt: skip
    assert values(loaded.table, "set_id") == [set_id]
    assert loaded.layer.notes.get("set_id_from_file_name") == (1 if set_id else None)


def test_a_box_layer_keeps_every_box_with_the_box_list_spelling_normalised() -> None:
    text = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Infiltrate,1.5,2,300.25,40,,\n"
    text += "00000001_000.png,Emphysema,10,20,30,40\n00000002_000.png,Nodule,x,1,2,3\n"
    loaded = one("extra_boxes.csv", text)
    table = loaded.table
    assert (loaded.layer.kind, loaded.layer.variant, loaded.layer.field_names) == ("boxes", "bbox/nih", ["bboxes"])
    assert table["label"].tolist() == ["Infiltration", "Emphysema", "Nodule"]
    assert values(table, "x")[:2] == [1.5, 10.0]
    assert pd.isna(table["x"][2])
    assert table[["y", "w", "h"]].to_numpy().tolist()[0] == [2.0, 300.25, 40.0]
    assert loaded.layer.notes == {"infiltrate_renamed": 1, "unparsable_x": 1}


RELABEL_SPEC = {
    "id_column": "Image",
    "labels": {
        "Pneumonia": {"type": "boolean", "true": ["1"], "false": ["0"]},
        "Quality": {"type": "string", "values": ["good", "poor"]},
    },
    "description": "relabels by a team",
    "citation": "Team 2024",
    "licence": "CC-BY-4.0",
}


def test_a_generic_layer_has_one_column_per_spec_field() -> None:
    loaded = one("relabels.csv", "Quality,Image,Pneumonia,Other\ngood,00000001_000.png,1,a\npoor,00000002_000.png,,b\n"
                 ",00000003_000.png,2,c\n", RELABEL_SPEC)  # fmt: skip
    table, layer = loaded.table, loaded.layer
    assert (layer.kind, layer.variant, layer.field_names) == ("generic", "spec", ["pneumonia", "quality"])
    assert list(table.columns) == ["image_index", "pneumonia", "quality", "source_file", "line", PROBLEM_COLUMN]
    assert values(table, "pneumonia") == [True, None, None]
    assert values(table, "quality") == ["good", "poor", None]
    assert values(table, PROBLEM_COLUMN) == [None, None, "Pneumonia '2' is not one of true ['1'], false ['0']"]
    assert (layer.description, layer.citation, layer.licence) == ("relabels by a team", "Team 2024", "CC-BY-4.0")
    spec_bytes = json.dumps(RELABEL_SPEC).encode()
    assert layer.spec == LayerFile("relabels.csv.layer.json", "/data/relabels.csv.layer.json",
                                   hashlib.sha256(spec_bytes).hexdigest(), 0)  # fmt: skip


def test_a_spec_wins_over_a_recognised_header() -> None:
    spec = {"id_column": "Image Index", "labels": {"Finding Labels": {"type": "string"}}}
    loaded = one("Data_Entry_2017.csv", f"{CORE}\n00000001_000.png,Mass|Nodule,0,1,40,M,PA\n", spec)
    assert loaded.layer.kind == "generic"
    assert values(loaded.table, "finding_labels") == ["Mass|Nodule"]


def test_a_spec_naming_a_column_the_file_lacks_is_refused() -> None:
    with pytest.raises(LayerSpecError, match=r"id_column: 'Image' is not a column of relabels\.csv"):
        one("relabels.csv", "File,Pneumonia,Quality\n00000001_000.png,1,good\n", RELABEL_SPEC)


def test_an_unknown_header_without_a_spec_and_unreadable_bytes_are_refused() -> None:
    with pytest.raises(UnknownHeaderError, match=r"relabels\.csv: unknown annotation layer header"):
        one("relabels.csv", "File,Pneumonia\n00000001_000.png,1\n")
    with pytest.raises(UnreadableFileError, match=r"relabels\.csv: not UTF-8"):
        load_layer("x", [LayerInput("relabels.csv", "relabels.csv", b"Image,\xff\n")], None)


def test_two_files_of_one_layer_become_one_table_told_apart_by_source_file() -> None:
    header = "Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass\n"
    test = (header + "00000001_000.png,1,NO,NO,NO,yes\n").encode()
    val = (header + "00000002_000.png,2,YES,NO,NO,NO\n00000003_000.png,3,NO,NO,NO,NO\n").encode()
    files = [LayerInput("test_labels.csv", "s3://b/test_labels.csv", test),
             LayerInput("validation_labels.csv", "s3://b/validation_labels.csv", val)]  # fmt: skip
    loaded = load_layer("google", files, None)
    table, layer = loaded.table, loaded.layer
    assert table["source_file"].tolist() == ["test_labels.csv", "validation_labels.csv", "validation_labels.csv"]
    assert table["line"].tolist() == [2, 2, 3]
    assert values(table, "set_id") == ["test", "val", "val"]
    assert layer.files == (
        LayerFile("test_labels.csv", "s3://b/test_labels.csv", hashlib.sha256(test).hexdigest(), 1),
        LayerFile("validation_labels.csv", "s3://b/validation_labels.csv", hashlib.sha256(val).hexdigest(), 2),
    )
    assert loaded.variants == {"test_labels.csv": "google2019", "validation_labels.csv": "google2019"}
    assert loaded.notes == {"test_labels.csv": {"expert_values_not_upper_case": 1, "set_id_from_file_name": 1},
                            "validation_labels.csv": {"set_id_from_file_name": 2}}  # fmt: skip
    assert layer.notes == {"expert_values_not_upper_case": 1, "set_id_from_file_name": 3}


def test_files_of_different_formats_or_of_one_name_cannot_be_one_layer() -> None:
    entry = LayerInput(
        "Data_Entry_2017.csv", "a/Data_Entry_2017.csv", f"{CORE}\n00000001_000.png,Mass,0,1,4,M,PA\n".encode()
    )
    boxes = LayerInput("boxes.csv", "boxes.csv", b"Image Index,Finding Label,x,y,w,h\n00000001_000.png,Mass,1,2,3,4\n")
    with pytest.raises(BadDataError) as caught:
        load_layer("mixed", [entry, boxes], None)
    assert "Data_Entry_2017.csv is label_version, boxes.csv is boxes" in str(caught.value)
    with pytest.raises(BadDataError, match=r"two of its files are named Data_Entry_2017\.csv"):
        load_layer("twice", [entry, LayerInput(entry.name, "b/Data_Entry_2017.csv", entry.data)], None)
    with pytest.raises(BadDataError, match="has no files"):
        load_layer("none", [], None)


def test_a_file_with_only_a_header_loads_as_an_empty_table() -> None:
    loaded = expert([], header="Image Index,Fracture,Pneumothorax,Airspace opacity,Nodule or mass")
    assert len(loaded.table) == 0
    assert loaded.layer.files[0].rows == 0
    assert "fracture" in loaded.table.columns
