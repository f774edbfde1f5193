"""Recognising a layer file's format by its header: every Data_Entry and box-list variant, Google's expert labels in
the spellings that circulate, and a clear error (columns found, formats known, the spec) for any other header."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.curate.variants import BBOX_VARIANTS, DATA_ENTRY_VARIANTS
from pipeline.errors import UnknownHeaderError
from pipeline.layers.formats import recognise_layer

NIH_EXPERT = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,Airspace opacity,"
    "Nodule or mass,Set Id"
)
DATA_ENTRY_HEADERS = {
    "data_entry/bracketed-trailing-comma": "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
    "Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],",
    "data_entry/bracketed": "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]",
    "data_entry/explicit": "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y",
    "data_entry/no-size": "Patient ID,Image Index,Finding Labels,Follow-up #,Patient Age,Patient Gender,View Position",
    "data_entry/underscore": "Image_Index,Finding_Labels,Follow_Up_#,Patient_ID,Patient_Age,Patient_Gender,"
    "View_Position",
}


def cells(header: str) -> list[str]:
    """The header as the csv module cuts it (brackets split at their comma, as a file's first line is read)."""
    return next(csv.reader(io.StringIO(header)))


def test_the_tests_cover_every_data_entry_and_box_variant() -> None:
    assert set(DATA_ENTRY_HEADERS) == {v.name for v in DATA_ENTRY_VARIANTS}
    assert {v.name for v in BBOX_VARIANTS} == {"bbox/nih", "bbox/explicit"}


@pytest.mark.parametrize("variant", sorted(DATA_ENTRY_HEADERS))
def test_any_data_entry_variant_is_a_label_version(variant: str) -> None:
    kind, match = recognise_layer(cells(DATA_ENTRY_HEADERS[variant]), "Data_Entry_2017.csv")
    assert (kind, match.variant.name) == ("label_version", variant)


def test_a_label_version_header_in_another_case_and_order_is_recognised() -> None:
    header = "FINDING LABELS,image index,Patient Sex,patient id,follow-up #,patient age,view position"
    kind, match = recognise_layer(cells(header), "sample_labels.csv")
    assert (kind, match.variant.name) == ("label_version", "data_entry/no-size")


@pytest.mark.parametrize(
    ("header", "variant"),
    [
        ("Image Index,Finding Label,Bbox [x,y,w,h],,,", "bbox/nih"),
        ("Image Index,Finding Label,x,y,w,h", "bbox/explicit"),
        ("image_index,finding_label,X,Y,W,H", "bbox/explicit"),
    ],
)
def test_a_box_list_is_a_box_layer(header: str, variant: str) -> None:
    kind, match = recognise_layer(cells(header), "extra_boxes.csv")
    assert (kind, match.variant.name) == ("boxes", variant)


@pytest.mark.parametrize(
    "header",
    [
        NIH_EXPERT,
        "Image_Index,Finding_Labels,Patient_ID,OriginalImageWidth,OriginalImageHeight,Fracture,Pneumothorax,"
        "Airspace_opacity,Nodule_or_mass,Set_Id",
        "Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass",
        "Image Index,Fracture,Pneumothorax,Airspace Opacity,Nodule/Mass,Set ID",
        "Nodule / Mass,AIRSPACE_OPACITY,pneumothorax,FRACTURE,image_index,set_id",
        "Image Index,Fracture,Pneumothorax,Airspace opacity,Nodule or Mass,Set Id,,",
        ",Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass",
    ],
)
def test_google_expert_labels_are_recognised_in_the_spellings_that_circulate(header: str) -> None:
    kind, match = recognise_layer(cells(header), "google2019_nih-chest-xray-labels.csv")
    assert kind == "expert_labels"
    assert {"image_index", "fracture", "pneumothorax", "airspace_opacity", "nodule_or_mass"} <= set(match.keys)


def test_google_columns_map_to_their_fields_in_file_order() -> None:
    _, match = recognise_layer(cells(NIH_EXPERT), "four_findings.csv")
    assert match.keys[-5:] == ["fracture", "pneumothorax", "airspace_opacity", "nodule_or_mass", "set_id"]
    assert match.keys[7:11] == ["width", "height", "spacing_x", "spacing_y"]


def test_an_unknown_header_names_the_columns_the_formats_and_the_spec() -> None:
    with pytest.raises(UnknownHeaderError) as caught:
        recognise_layer(["Image", "Pneumonia", "Quality"], "s3://bucket/team/relabels.csv")
    text = str(caught.value)
    assert text.startswith("s3://bucket/team/relabels.csv: unknown annotation layer header")
    assert "columns found: ['Image', 'Pneumonia', 'Quality']" in text
    for kind in ("label_version", "expert_labels", "boxes"):
        assert f"\n  {kind} (" in text
    assert "Image Index,Finding Labels,Follow-up #" in text  # an example header of each format
    assert "Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass,Set Id" in text
    assert "Image Index,Finding Label,Bbox [x,y,w,h],,," in text
    assert "relabels.csv.layer.json or relabels.layer.json" in text
    assert '"id_column"' in text


def test_an_expert_file_lacking_a_finding_is_told_what_it_lacks() -> None:
    with pytest.raises(UnknownHeaderError, match="closest variant google2019") as caught:
        recognise_layer(cells("Image Index,Fracture,Pneumothorax,Airspace opacity,Set Id"), "test_labels.csv")
    assert "'Nodule or mass' or 'Nodule/Mass'" in str(caught.value)
