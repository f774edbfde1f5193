"""A generic layer's JSON spec: what it declares, how its cells are read, and a clear error (file, key, fix) for
every rule it breaks."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from pipeline.errors import LayerSpecError
from pipeline.layers.schema import LayerField
from pipeline.layers.spec import LayerSpec, check_columns, parse_spec, spec_names

SOURCE = "relabels.layer.json"
FULL: dict[str, Any] = {
    "id_column": "Image",
    "labels": {
        "Pneumonia": {"type": "boolean", "true": ["1", "Yes"], "false": ["0", "no"], "field": "pneumonia"},
        "Image Quality": {"type": "string", "values": ["good", "poor"], "description": "the reader's grade"},
        "Reader": {"type": "string", "map": {"A": "reader_a", "B": "reader_b"}},
        "Comment": {"type": "string", "null": ["", "-"]},
        "Effusion?": {"type": "bool", "true": ["y"], "false": ["n"]},
    },
    "null": ["", "NA"],
    "description": "a team's relabels",
    "citation": "Team, 2024",
    "license": "CC0-1.0",
}


def spec_of(payload: Any) -> LayerSpec:
    return parse_spec(json.dumps(payload).encode(), SOURCE)


def with_(change: dict[str, Any], label: Any = None) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(json.dumps(FULL))
    payload.update(change)
    if label is not None:
        payload["labels"] = {"Pneumonia": label}
    return payload


def test_spec_names_beside_a_file() -> None:
    assert spec_names("relabels.csv") == ("relabels.csv.layer.json", "relabels.layer.json")
    assert spec_names("RELABELS.CSV") == ("RELABELS.CSV.layer.json", "RELABELS.layer.json")
    assert spec_names("relabels.tsv") == ("relabels.tsv.layer.json",)


def test_a_full_spec_declares_its_fields_and_texts() -> None:
    spec = spec_of(FULL)
    assert spec.id_column == "Image"
    assert [(s.column, s.field, s.type) for s in spec.labels] == [
        ("Pneumonia", "pneumonia", "bool"),
        ("Image Quality", "image_quality", "string"),
        ("Reader", "reader", "string"),
        ("Comment", "comment", "string"),
        ("Effusion?", "effusion", "bool"),
    ]
    assert spec.fields[1] == LayerField("image_quality", "string", "the reader's grade")
    assert (spec.description, spec.citation, spec.licence) == ("a team's relabels", "Team, 2024", "CC0-1.0")
    assert spec.labels[0].null == ("", "NA")  # the spec's null, unless the label has its own
    assert spec.labels[3].null == ("", "-")


def read(label: int, values: list[str]) -> tuple[list[Any], list[str | None]]:
    got, problems = spec_of(FULL).labels[label].read(pd.Series(values, dtype="str"))
    return [None if v is pd.NA else v for v in got.tolist()], problems.tolist()


def test_boolean_cells_match_case_insensitively_after_strip_and_nulls_are_not_read() -> None:
    values, problems = read(0, ["1", " YES ", "0", "No", "", "na", "maybe"])
    assert values == [True, True, False, False, None, None, None]
    assert problems[:6] == [None] * 6
    assert problems[6] == "Pneumonia 'maybe' is not one of true ['1', 'Yes'], false ['0', 'no'], null ['NA']"


def test_string_cells_by_values_by_map_and_as_free_text() -> None:
    assert read(1, ["good", " poor", "", "Good"]) == (
        ["good", "poor", None, None],
        [None, None, None, "Image Quality 'Good' is not one of ['good', 'poor'], null ['NA']"],
    )
    assert read(2, ["A", "B", "C"]) == (
        ["reader_a", "reader_b", None],
        [None, None, "Reader 'C' is not a key of the map ['A', 'B'], null ['NA']"],
    )
    assert read(3, ["  a note ", "-", ""]) == (["a note", None, None], [None, None, None])


def test_a_minimal_spec_has_defaults() -> None:
    spec = spec_of({"id_column": "file", "labels": {"Nodule/Mass (1=yes)": {"type": "string"}}})
    assert spec.labels[0].field == "nodule_mass_1_yes"
    assert spec.null == ("",)
    assert (spec.description, spec.citation, spec.licence) == ("", "", "")


@pytest.mark.parametrize(
    ("payload", "key", "says"),
    [
        (with_({"id_colum": "Image"}), "id_colum", "did you mean 'id_column'?"),
        (with_({"licence": "CC0"}), "licence", "given twice"),
        ({"labels": FULL["labels"]}, "id_column", "missing"),
        (with_({"id_column": " "}), "id_column", "is empty"),
        (with_({"id_column": 3}), "id_column", "must be text, not int"),
        ({"id_column": "Image"}, "labels", "missing"),
        (with_({"labels": {}}), "labels", "must be a non-empty object"),
        (with_({"labels": ["Pneumonia"]}), "labels", "must be a non-empty object"),
        (with_({"null": "NA"}), "labels.Pneumonia", None),  # a single text is a one-item list: no error
        (with_({"null": {"x": 1}}), "null", "is not a list of cell texts"),
        (with_({}, {"type": "boolean", "true": ["1"], "false": ["0"], "colour": "red"}), "labels.Pneumonia.colour",
         "unknown key"),
        (with_({}, {"type": "number"}), "labels.Pneumonia.type", "'number' is not a known type"),
        (with_({}, {"true": ["1"], "false": ["0"]}), "labels.Pneumonia.type", "'None' is not a known type"),
        (with_({}, {"type": "boolean", "true": ["1", "yes"], "false": ["YES"]}), "labels.Pneumonia",
         "['yes'] appear(s) in both true and false"),
        (with_({}, {"type": "boolean", "true": [], "false": ["0"]}), "labels.Pneumonia.true", "is empty"),
        (with_({}, {"type": "boolean", "false": ["0"]}), "labels.Pneumonia.true", "missing"),
        (with_({}, {"type": "boolean", "true": [True], "false": ["0"]}), "labels.Pneumonia.true",
         "is not a list of cell texts"),
        (with_({}, {"type": "boolean", "true": ["1", ""], "false": ["0"]}), "labels.Pneumonia",
         "appear(s) in both true/false and null"),
        (with_({}, {"type": "boolean", "true": ["1"], "false": ["0"], "values": ["a"]}), "labels.Pneumonia",
         'a "boolean" label has no "values"/"map"'),
        (with_({}, {"type": "string", "true": ["1"]}), "labels.Pneumonia", 'a "string" label has no "true"/"false"'),
        (with_({}, {"type": "string", "values": ["a"], "map": {"a": "b"}}), "labels.Pneumonia",
         'has both "values" and "map"'),
        (with_({}, {"type": "string", "map": {"a": 1}}), "labels.Pneumonia.map", "must be a non-empty object"),
        (with_({}, {"type": "string", "field": "Pneumonia"}), "labels.Pneumonia.field",
         "'Pneumonia' is not a valid field name"),
        (with_({}, {"type": "string", "field": "image_index"}), "labels.Pneumonia",
         "field 'image_index' is taken by the layer table"),
        (with_({}, {"type": "string", "field": "line"}), "labels.Pneumonia", "field 'line' is taken"),
        (with_({}, "boolean"), "labels.Pneumonia", "must be an object"),
        (with_({"labels": {"1st read": {"type": "string"}}}), "labels.1st read", "makes no valid field name"),
        (with_({"labels": {"Image": {"type": "string"}}}), "labels.Image", "is the id_column"),
        (with_({"labels": {"Nodule Mass": {"type": "string"}, "nodule/mass": {"type": "string"}}}),
         "labels.nodule/mass", "field 'nodule_mass' is also 'Nodule Mass''s"),
    ],
)  # fmt: skip
def test_each_broken_rule_is_named_with_its_key_and_fix(payload: Any, key: str, says: str | None) -> None:
    if says is None:
        assert spec_of(payload).labels[0].null == ("NA",)
        return
    with pytest.raises(LayerSpecError) as caught:
        spec_of(payload)
    text = str(caught.value)
    assert text.startswith(f"{SOURCE}: {key}: ")
    assert says in text
    assert "; " in text.removeprefix(f"{SOURCE}: {key}: ")  # a fix follows the problem


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'{"id_column": "Image",', "not valid JSON"),
        (b'["Image"]', "the spec must be a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not valid JSON"),
    ],
)
def test_a_spec_that_is_no_json_object_is_refused_by_name(data: bytes, says: str) -> None:
    with pytest.raises(LayerSpecError, match=f"^{SOURCE}: {says}"):
        parse_spec(data, SOURCE)


def test_the_spec_columns_must_be_columns_of_the_file() -> None:
    spec = spec_of(FULL)
    check_columns(spec, ["Image", "Pneumonia", " Image Quality", "Reader", "Comment", "Effusion?", "extra"], "r.csv")
    with pytest.raises(LayerSpecError) as caught:
        check_columns(spec, ["image", "Pneumonia"], "relabels.csv")
    text = str(caught.value)
    assert text.startswith(f"{SOURCE}: id_column: 'Image' is not a column of relabels.csv")
    assert "columns found: ['image', 'Pneumonia']" in text
    assert "did you mean 'image'?" in text
    with pytest.raises(LayerSpecError, match=r"labels\.Reader: 'Reader' is not a column of relabels\.csv"):
        check_columns(spec, ["Image", "Pneumonia", "Image Quality", "Comment"], "relabels.csv")
    with pytest.raises(LayerSpecError, match=r"relabels\.csv has 2 columns named 'Image'"):
        check_columns(spec, ["Image", "Image"], "relabels.csv")
