"""A layer's checks: its kind's suite, the rows it quarantines (each with its reason, the rest of the file used),
what only warns (an image not in Data_Entry), and the file it refuses (mostly defective)."""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
import pytest

from pipeline.curate.metadata import load_data_entry
from pipeline.curate.outcomes import ExpectationOutcome
from pipeline.curate.quarantine import ROW_DEFECT_COLUMNS
from pipeline.curate.suites import GX_SEVERITY, SUITES_DIR, load_suite
from pipeline.errors import DefectiveFileError
from pipeline.layers.checks import CheckedLayer, _check_frame, check_layer
from pipeline.layers.load import PROBLEM_COLUMN, LayerInput, LoadedLayer, load_layer
from pipeline.nih import IMAGE_NAME_RE

KINDS = ("label_version", "expert_labels", "boxes", "generic")
CORE = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"
GOOGLE = "Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass"
ENTRY_ROWS = [f"0000000{p}_00{f}.png,No Finding,{f},{p},40,M,PA" for p in range(1, 6) for f in range(3)]


@pytest.fixture(scope="module")
def entry() -> pd.DataFrame:
    text = CORE + "\n" + "\n".join(ENTRY_ROWS) + "\n"
    return load_data_entry(text.encode(), "Data_Entry_2017_v2020.csv").frame


def layer(text: str, name: str = "test_labels.csv", spec: dict[str, Any] | None = None) -> LoadedLayer:
    given = LayerInput("spec.layer.json", "spec.layer.json", json.dumps(spec).encode()) if spec else None
    return load_layer("google", [LayerInput(name, name, text.encode())], given)


def google(*rows: str) -> LoadedLayer:
    return layer(GOOGLE + "\n" + "\n".join(rows) + "\n")


def failed(checked: CheckedLayer) -> dict[str, ExpectationOutcome]:
    return {o.check: o for o in checked.run.outcomes if not o.success}


def reasons(checked: CheckedLayer) -> dict[int, str]:
    defects = checked.run.defects
    return {} if defects is None else dict(zip(defects["line"], defects["reason"], strict=True))


CLEAN = [f"0000000{p}_000.png,{p},NO,YES,NO,NO" for p in range(1, 5)]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_has_a_suite_gx_loads_whole_with_the_severity_rules(kind: str) -> None:
    path = SUITES_DIR / f"layer_{kind}.json"
    payload = json.loads(path.read_text())
    suite = load_suite(path)
    assert suite.name == f"layer_{kind}"
    assert len(suite.expectations) == len(payload["expectations"])
    checks = [e.meta["check"] for e in suite.expectations]
    assert len(set(checks)) == len(checks)
    assert checks[:2] == ["has_rows", "columns_present"]
    for expectation in suite.expectations:
        assert expectation.severity.value == GX_SEVERITY[expectation.meta["severity"]]
        if expectation.meta["check"] in ("has_rows", "columns_present") or expectation.meta["check"].startswith(
            "type_"
        ):
            assert expectation.meta["severity"] == "blocking"
        else:
            assert expectation.meta["severity"] == "warning"
    assert {"image_index_pattern", "image_known"} <= set(checks)
    for spec in payload["expectations"]:
        if "regex" in spec["kwargs"]:
            pattern = re.compile(spec["kwargs"]["regex"])
            for sample in ("00000001_000.png", "0000001_000.png", "00000001_000.png.x", "00000001_0000.png"):
                assert bool(pattern.match(sample)) == bool(IMAGE_NAME_RE.match(sample))


SAMPLES = {
    "label_version": (CORE + "\n00000001_000.png,Mass,0,1,40,M,PA\n", None),
    "expert_labels": (GOOGLE + "\n00000001_000.png,1,NO,NO,NO,NO\n", None),
    "boxes": ("Image Index,Finding Label,x,y,w,h\n00000001_000.png,Mass,1,2,3,4\n", None),
    "generic": ("Image,P\n00000001_000.png,1\n", {"id_column": "Image", "labels": {"P": {"type": "string"}}}),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_column_a_suite_names_is_in_the_frame_it_runs_on(kind: str, entry: pd.DataFrame) -> None:
    text, spec = SAMPLES[kind]
    loaded = layer(text, spec=spec)
    frame = _check_frame(loaded, entry)
    payload = json.loads((SUITES_DIR / f"layer_{kind}.json").read_text())
    named = {spec["kwargs"].get("column") for spec in payload["expectations"]} - {None}
    named |= {c for spec in payload["expectations"] for c in spec["kwargs"].get("column_set", [])}
    assert named <= set(frame.columns)
    assert set(payload["meta"]["derived_columns"]) <= set(frame.columns)
    checked = check_layer(loaded, entry)
    assert not failed(checked), failed(checked)
    assert checked.run.suite == "layer_google"


def test_a_clean_layer_keeps_every_row_without_the_problem_column(entry: pd.DataFrame) -> None:
    loaded = google(*CLEAN)
    checked = check_layer(loaded, entry)
    assert checked.run.defects is None
    assert checked.layer == loaded.layer
    pd.testing.assert_frame_equal(checked.table, loaded.table.drop(columns=[PROBLEM_COLUMN]))


def test_a_value_outside_the_vocabulary_quarantines_its_row_with_the_reason(entry: pd.DataFrame) -> None:
    checked = check_layer(google("00000001_000.png,1,MAYBE,NO,NO,NO", *CLEAN[1:]), entry)
    assert reasons(checked) == {2: "Fracture 'MAYBE' is not YES or NO"}
    defects = checked.run.defects
    assert defects is not None
    assert list(defects.columns) == list(ROW_DEFECT_COLUMNS)
    assert defects.iloc[0].to_dict() == {"kind": "layer", "file": "test_labels.csv", "line": 2,
                                         "image_index": "00000001_000.png",
                                         "reason": "Fracture 'MAYBE' is not YES or NO"}  # fmt: skip
    assert checked.table["line"].tolist() == [3, 4, 5]
    assert failed(checked)["values_in_vocabulary"].severity == "warning"


def test_a_generic_value_outside_the_vocabulary_names_column_value_and_what_is_allowed(entry: pd.DataFrame) -> None:
    spec = {"id_column": "Image", "labels": {"Quality": {"type": "string", "values": ["good", "poor"]}}}
    rows = "".join(f"0000000{p}_000.png,good\n" for p in range(1, 4))
    checked = check_layer(layer("Image,Quality\n00000004_000.png,bad\n" + rows, "relabels.csv", spec), entry)
    assert reasons(checked) == {2: "Quality 'bad' is not one of ['good', 'poor']"}
    assert checked.table["quality"].tolist() == ["good"] * 3


def test_a_patient_that_differs_from_data_entry_quarantines_the_row(entry: pd.DataFrame) -> None:
    checked = check_layer(google("00000001_000.png,2,NO,NO,NO,NO", *CLEAN[1:]), entry)
    assert reasons(checked) == {2: "patient id 2 differs from Data_Entry's (1) for this image"}


def test_an_identical_repeat_quarantines_the_repeat_only(entry: pd.DataFrame) -> None:
    checked = check_layer(google(*CLEAN, CLEAN[1]), entry)
    assert reasons(checked) == {6: "the same as line 3 (an exact repeat)"}
    assert checked.table["line"].tolist() == [2, 3, 4, 5]


def test_rows_of_one_image_that_disagree_all_go_to_quarantine(entry: pd.DataFrame) -> None:
    checked = check_layer(google(*CLEAN, "00000002_000.png,2,YES,YES,NO,NO", "00000002_000.png,2,NO,YES,NO,NO"), entry)
    why = "image labelled on lines 3, 6, 7 with different values"
    assert reasons(checked) == {3: why, 6: why, 7: why}
    assert "00000002_000.png" not in set(checked.table["image_index"])


def test_a_row_whose_image_is_not_in_data_entry_is_kept_and_reported(entry: pd.DataFrame) -> None:
    checked = check_layer(google(*CLEAN, "00000009_000.png,9,NO,NO,NO,NO"), entry)
    assert checked.run.defects is None
    assert "00000009_000.png" in set(checked.table["image_index"])
    unknown = failed(checked)["image_known"]
    assert (unknown.severity, unknown.unexpected_count, unknown.quarantines_rows) == ("warning", 1, False)
    assert unknown.examples[0]["image_index"] == "00000009_000.png"


def test_an_image_name_off_the_pattern_is_quarantined(entry: pd.DataFrame) -> None:
    checked = check_layer(google(*CLEAN, "images/00000001_001.png,1,NO,NO,NO,NO"), entry)
    assert reasons(checked) == {
        6: "image name 'images/00000001_001.png' is not <8-digit patient>_<3-digit follow-up>.png"
    }


def test_a_mostly_defective_file_is_refused(entry: pd.DataFrame) -> None:
    with pytest.raises(DefectiveFileError, match=r"test_labels.csv: 3 of 5 rows have defects .*expert-label layer"):
        check_layer(google(*CLEAN[:2], *(f"0000000{p}_001.png,{p},?,NO,NO,NO" for p in range(3, 6))), entry)


def test_an_empty_file_fails_has_rows_and_one_of_several_is_refused(entry: pd.DataFrame) -> None:
    assert failed(check_layer(google(), entry))["has_rows"].severity == "blocking"
    files = [LayerInput("test_labels.csv", "t", (GOOGLE + "\n" + CLEAN[0] + "\n").encode()),
             LayerInput("validation_labels.csv", "v", (GOOGLE + "\n").encode())]  # fmt: skip
    with pytest.raises(DefectiveFileError, match=r"validation_labels\.csv: no rows below its header"):
        check_layer(load_layer("google", files, None), entry)


def test_a_column_of_the_wrong_type_is_blocking(entry: pd.DataFrame) -> None:
    loaded = google(*CLEAN)
    table = loaded.table.assign(fracture=loaded.table["fracture"].astype("object").astype("str"))
    broken = LoadedLayer(loaded.layer, table, loaded.variants, loaded.notes)
    assert failed(check_layer(broken, entry))["type_fracture"].severity == "blocking"


def test_repeats_and_disagreements_across_two_files_name_each_file(entry: pd.DataFrame) -> None:
    with_set = GOOGLE + ",Set Id\n"
    test = with_set + "".join(f"{row},test\n" for row in CLEAN[:3])
    val = with_set + f"{CLEAN[0]},test\n{CLEAN[1]},val\n{CLEAN[3]},val\n00000005_000.png,5,NO,NO,NO,NO,val\n"
    files = [LayerInput("test_labels.csv", "t", test.encode()), LayerInput("validation_labels.csv", "v", val.encode())]
    checked = check_layer(load_layer("google", files, None), entry)
    defects = checked.run.defects
    assert defects is not None
    found = {(f, line): why for f, line, why in zip(defects["file"], defects["line"], defects["reason"], strict=True)}
    why = "image labelled on test_labels.csv line 3, validation_labels.csv line 3 with different values"
    assert found == {
        ("validation_labels.csv", 2): "the same as test_labels.csv line 2 (an exact repeat)",
        ("test_labels.csv", 3): why,
        ("validation_labels.csv", 3): why,
    }
    kept = list(zip(checked.table["source_file"], checked.table["line"], strict=True))
    assert kept == [("test_labels.csv", 2), ("test_labels.csv", 4), ("validation_labels.csv", 4),
                    ("validation_labels.csv", 5)]  # fmt: skip


def test_label_versions_quarantine_labels_outside_nih_vocabulary(entry: pd.DataFrame) -> None:
    rows = [
        "00000001_000.png,Pneumonitis|Mass,0,1,40,M,PA",
        "00000001_001.png,No Finding|Mass,1,1,40,M,PA",
        "00000001_002.png,,2,1,40,M,PA",
        *(f"0000000{p}_000.png,Hernia,0,{p},40,M,PA" for p in range(2, 6)),
    ]
    checked = check_layer(layer(CORE + "\n" + "\n".join(rows) + "\n", "Data_Entry_2017.csv"), entry)  # fmt: skip
    assert reasons(checked) == {
        2: "label(s) 'Pneumonitis' not among NIH's 14 findings and 'No Finding'",
        3: "'No Finding' together with a finding: ['No Finding', 'Mass']",
        4: "no labels (NIH writes 'No Finding' for an image without findings)",
    }
    assert checked.table["hernia"].tolist() == [True] * 4


def test_box_layers_follow_the_box_rules_with_any_of_the_14_findings(entry: pd.DataFrame) -> None:
    rows = ["00000001_000.png,Emphysema,10,20,30,40", "00000001_000.png,Emphysema,10,20,30,40",
            "00000002_000.png,Cardiomegaly|Emphysema,1,1,1,1", "00000003_000.png,Mass,-1,5,10,10",
            "00000003_000.png,Mass,1000,5,30,10", "00000004_000.png,Mass,5,5,0,10",
            *(f"0000000{p}_001.png,Hernia,1,2,3,4" for p in range(1, 6))]  # fmt: skip
    text = "Image Index,Finding Label,x,y,w,h\n" + "\n".join(rows) + "\n"
    checked = check_layer(layer(text, "boxes.csv"), entry)
    assert reasons(checked) == {
        3: "the same box (image, label, x, y, w, h) as line 2",
        4: "label 'Cardiomegaly|Emphysema' is not one of NIH's 14 findings",
        5: "box x -1.0 is negative (outside the image)",
        6: "box ends at x 1030.0 (x + w), outside the 1024-pixel image",
        7: "box w 0.0 is not positive",
    }
    assert checked.table["label"].tolist() == ["Emphysema", *["Hernia"] * 5]
