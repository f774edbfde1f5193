"""Great Expectations validation of the metadata: severities, messages, suite loading and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.metadata import LoadedTable, UnreadableFileError, load_bboxes, load_data_entry
from pipeline.nih import IMAGE_NAME_RE
from pipeline.validate import (
    GX_SEVERITY,
    SUITES_DIR,
    BlockingValidationError,
    ExpectationOutcome,
    SuiteError,
    ValidationReport,
    load_suite,
    raise_if_blocking,
    run_suite,
    validate_bboxes,
    validate_data_entry,
    validate_files,
    validate_main,
    validate_split_lists,
)
from tests.reference import BBOX_FILE, DATA_ENTRY_FILE, REFERENCE

BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"


@pytest.fixture(scope="module")
def entry_text() -> str:
    return DATA_ENTRY_FILE.read_text()


@pytest.fixture(scope="module")
def reference() -> LoadedTable:
    return load_data_entry(DATA_ENTRY_FILE.read_bytes(), DATA_ENTRY_FILE.name)


@pytest.fixture(scope="module")
def known(reference: LoadedTable) -> set[str]:
    return set(reference.frame["image_index"])


def entry_with(text: str, old: str, new: str) -> LoadedTable:
    assert old in text
    return load_data_entry(text.replace(old, new, 1).encode(), "edited.csv")


def failed(outcomes: list[ExpectationOutcome], check: str) -> ExpectationOutcome:
    matches = [o for o in outcomes if o.check == check]
    assert len(matches) == 1, [o.check for o in outcomes]
    assert not matches[0].success, matches[0]
    return matches[0]


def failures(outcomes: list[ExpectationOutcome]) -> set[str]:
    return {o.check for o in outcomes if not o.success}


def test_real_excerpt_has_no_blocking_failure(reference: LoadedTable) -> None:
    outcomes = validate_data_entry(reference).outcomes
    assert len(outcomes) == len(json.loads((SUITES_DIR / "data_entry.json").read_text())["expectations"])
    # v2020 renumbered follow-ups by study date: 561 of these rows differ from the image name (a warning)
    assert failures(outcomes) == {"follow_up_matches_index"}
    quirk = failed(outcomes, "follow_up_matches_index")
    assert quirk.severity == "warning"
    assert quirk.unexpected_count == 561
    assert quirk.element_count == 2000
    first = {"line": 6, "image_index": "00000003_001.png", "follow_up": 0, "index_follow_up": 1}
    assert quirk.examples[0] == first
    assert [o.check for o in outcomes][:2] == ["has_rows", "columns_present"]


def test_missing_column(reference: LoadedTable) -> None:
    table = LoadedTable(reference.frame.drop(columns=["sex"]), reference.variant, "no-sex.csv")
    outcomes = validate_data_entry(table).outcomes
    outcome = failed(outcomes, "columns_present")
    assert outcome.severity == "blocking"
    assert outcome.unexpected_count == 1
    assert "['sex']" in outcome.description
    errored = failed(outcomes, "sex_valid")
    assert errored.column == "sex"
    assert "could not be evaluated" in errored.description


@pytest.mark.parametrize(
    ("old", "new", "check", "column", "count", "example"),
    [
        ("00000002_000.png,No Finding", "00000001_000.png,No Finding", "image_index_unique", "image_index", 2,
         {"line": 2, "image_index": "00000001_000.png"}),
        ("00000001_000.png,Cardiomegaly", "00000001_000.png,Cardiomegaly|Flu", "labels_in_vocabulary",
         "labels_in_vocabulary", 1, {"line": 2, "labels": ["Cardiomegaly", "Flu"]}),
        ("00000002_000.png,No Finding", "00000002_000.png,No Finding|Mass", "no_finding_alone",
         "no_finding_alone", 1, {"line": 5, "labels": ["No Finding", "Mass"]}),
        ("No Finding,0,2,", "No Finding,0,9999,", "patient_id_matches_index",
         "patient_id,index_patient_id", 1, {"line": 5, "patient_id": 9999, "index_patient_id": 2}),
        ("No Finding,0,2,", "No Finding,0,two,", "patient_id_present", "patient_id", 1,
         {"line": 5, "patient_id": None}),
        ("00000002_000.png", "0000002_000.png", "image_index_pattern", "image_index", 1,
         {"line": 5, "image_index": "0000002_000.png"}),
        ("80,M,PA", "80,X,PA", "sex_valid", "sex", 1, {"line": 5, "sex": "X"}),
        ("80,M,PA", "80,M,LL", "view_valid", "view_position", 1, {"line": 5, "view_position": "LL"}),
        (",2500,2048,0.171,0.171", ",2500,2048,0,0.171", "pixel_spacing_x_positive", "pixel_spacing_x", 1,
         {"line": 5, "pixel_spacing_x": 0.0}),
    ],
)  # fmt: skip
def test_blocking_failures_name_expectation_column_count_and_rows(
    entry_text: str, old: str, new: str, check: str, column: str, count: int, example: dict[str, object]
) -> None:
    outcomes = validate_data_entry(entry_with(entry_text, old, new)).outcomes
    outcome = failed(outcomes, check)
    assert outcome.severity == "blocking"
    assert outcome.column == column
    assert outcome.unexpected_count == count
    assert f"{count} of 2000 rows fail" in outcome.description
    assert example.items() <= outcome.examples[0].items()
    expected = {check} | ({"patient_id_matches_index"} if check == "image_index_unique" else set())
    assert failures(outcomes) - {"follow_up_matches_index"} == expected
    line = outcome.render()
    assert line.startswith(f"[blocking] data_entry.{check} ({outcome.expectation} on {column})")
    assert f"line={example['line']}" in line


def test_impossible_ages_are_warnings_not_blocking(entry_text: str) -> None:
    table = entry_with(entry_text, "No Finding,0,2,80,", "No Finding,0,2,414,")
    report = ValidationReport(validate_data_entry(table).outcomes, {"edited.csv": table.variant})
    assert report.ok
    assert table.notes["age_impossible"] == 1
    flagged = failed(report.outcomes, "age_not_flagged")
    assert flagged.severity == "warning"
    row = {"line": 5, "image_index": "00000002_000.png", "age_raw": "414", "age_flagged": True}
    assert flagged.examples == [row]
    assert flagged in report.warnings
    assert "age_not_flagged" in report.summary_text()


def box_table(rows: str) -> LoadedTable:
    return load_bboxes((BOX_HEADER + rows).encode(), "boxes.csv")


def test_real_bbox_list_is_blocked_by_its_extra_row(known: set[str]) -> None:
    table = load_bboxes(BBOX_FILE.read_bytes(), BBOX_FILE.name)
    outcomes = validate_bboxes(table, known).outcomes
    assert failures(outcomes) == {"label_in_vocabulary", "image_known"}
    bad = failed(outcomes, "label_in_vocabulary")
    assert bad.severity == "blocking"
    assert bad.unexpected_count == 1
    row = {"line": 986, "image_index": "00000001_001.png", "label": "Cardiomegaly|Emphysema"}
    assert bad.examples == [row]
    assert failed(outcomes, "image_known").severity == "warning"


def test_box_outside_the_image_is_blocking() -> None:
    table = box_table("00000001_000.png,Mass,1000.5,10,100,20\n00000001_000.png,Nodule,-1,10,5,0\n")
    outcomes = validate_bboxes(table, None).outcomes
    assert failures(outcomes) == {"x_end_inside", "x_inside", "h_positive"}
    outside = failed(outcomes, "x_end_inside")
    assert outside.severity == "blocking"
    assert outside.unexpected_count == 1
    assert outside.examples[0]["line"] == 2
    assert outside.examples[0]["x_end"] == pytest.approx(1100.5)
    assert "image_known" not in {o.check for o in outcomes}


def test_unknown_box_image_is_a_warning(known: set[str]) -> None:
    table = box_table("00000001_000.png,Mass,1,1,1,1\n09999999_000.png,Mass,1,1,1,1\n")
    outcomes = validate_bboxes(table, known).outcomes
    unknown = failed(outcomes, "image_known")
    assert unknown.severity == "warning"
    assert unknown.examples[0]["image_index"] == "09999999_000.png"
    assert failures(outcomes) == {"image_known"}


def test_split_lists(known: set[str]) -> None:
    train = ["00000001_000.png", "00000001_001.png", "00000002_000.png", "bad.png"]
    test = [(1, "00000003_000.png"), (3, "00000002_000.png"), (4, "00000002_000.png")]
    outcomes = validate_split_lists(train, test, known).outcomes
    expected = {"name_pattern", "lists_disjoint", "name_unique", "name_known", "patients_disjoint"}
    assert failures(outcomes) == expected
    overlap = failed(outcomes, "lists_disjoint")
    assert overlap.severity == "blocking"
    assert overlap.unexpected_count == 3
    assert {"line": 3, "name": "00000002_000.png", "list": "train_val", "in_both": True} in overlap.examples
    assert failed(outcomes, "name_known").severity == "warning"
    assert failed(outcomes, "name_pattern").examples == [{"line": 4, "list": "train_val", "name": "bad.png"}]


def test_clean_split_lists_pass_without_data_entry() -> None:
    outcomes = validate_split_lists(["00000001_000.png"], ["00000002_000.png"], None).outcomes
    assert failures(outcomes) == set()
    assert "name_known" not in {o.check for o in outcomes}


@pytest.mark.parametrize("name", ["data_entry", "bbox", "split_lists"])
def test_suite_files_are_gx_suites_with_both_severities(name: str) -> None:
    payload = json.loads((SUITES_DIR / f"{name}.json").read_text())
    suite = load_suite(SUITES_DIR / f"{name}.json")
    assert suite.name == name
    assert len(suite.expectations) == len(payload["expectations"])
    checks = [e.meta["check"] for e in suite.expectations]
    assert len(set(checks)) == len(checks)
    for expectation in suite.expectations:
        assert expectation.severity.value == GX_SEVERITY[expectation.meta["severity"]]
    for spec in payload["expectations"]:
        if "regex" in spec["kwargs"]:
            pattern = re.compile(spec["kwargs"]["regex"])
            for sample in ("00000001_000.png", "0000001_000.png", "00000001_000.png.x", "00000001_0000.png"):
                assert bool(pattern.match(sample)) == bool(IMAGE_NAME_RE.match(sample))
    round_trip = suite.to_json_dict()
    assert [e["type"] for e in round_trip["expectations"]] == [e["type"] for e in payload["expectations"]]


def test_suite_with_unknown_expectation_type_raises(tmp_path: Path, reference: LoadedTable) -> None:
    payload = json.loads((SUITES_DIR / "bbox.json").read_text())
    payload["expectations"].append(
        {"type": "expect_box_to_be_pretty", "kwargs": {"column": "x"}, "meta": {"severity": "warning"}}
    )
    path = tmp_path / "bbox.json"
    path.write_text(json.dumps(payload))
    dropped = r"loaded 22 of 23 expectations; dropped \['expect_box_to_be_pretty'\]"
    with pytest.raises(SuiteError, match=dropped):
        load_suite(path)
    with pytest.raises(SuiteError, match="expect_box_to_be_pretty"):
        run_suite("bbox", pd.DataFrame({"line": [2]}), suite_path=path)


def test_suite_without_severity_raises(tmp_path: Path) -> None:
    payload = {"name": "s", "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(SuiteError, match=r"meta\.severity None"):
        load_suite(path)


def test_raise_if_blocking_lists_each_failure(entry_text: str) -> None:
    table = entry_with(entry_text, "00000002_000.png,No Finding", "00000002_000.png,No Finding|Mass")
    report = ValidationReport(validate_data_entry(table).outcomes, {"edited.csv": table.variant})
    assert not report.ok
    assert len(report.blocking_failures) == 1
    with pytest.raises(BlockingValidationError) as caught:
        raise_if_blocking(report)
    message = str(caught.value)
    assert "data_entry.no_finding_alone (expect_column_values_to_be_in_set on no_finding_alone)" in message
    assert "1 of 2000 rows fail" in message
    assert "line=5" in message
    assert "'No Finding', 'Mass'" in message
    assert caught.value.report is report
    raise_if_blocking(ValidationReport([], {}))


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_validate_files_detects_kinds(tmp_path: Path, entry_text: str) -> None:
    train = write(tmp_path / "train_val_list.txt", "00000001_000.png\r\n00000001_001.png\r\n")
    test = write(tmp_path / "test_list.txt", "\n00000002_000.png\n")
    boxes = write(tmp_path / "boxes.csv", BOX_HEADER + "00000002_000.png,Mass,1,1,10,10\n\n")
    report = validate_files([DATA_ENTRY_FILE, boxes, train, test])
    assert report.variants == {
        str(DATA_ENTRY_FILE): "data_entry/bracketed", str(boxes): "bbox/nih",
        str(train): "split_list/names", str(test): "split_list/names",
    }  # fmt: skip
    assert report.ok
    assert {o.suite for o in report.outcomes} == {"data_entry", "bbox", "split_lists"}
    assert [o.check for o in report.warnings] == ["follow_up_matches_index"]
    assert json.loads(json.dumps(report.to_json()))["ok"] is True


def test_validate_files_rejects_binary_files(tmp_path: Path) -> None:
    png = next((REFERENCE / "images").glob("*.png"))
    with pytest.raises(UnreadableFileError, match=re.escape(str(png))):
        validate_files([png])


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str], entry_text: str) -> None:
    assert validate_main([str(DATA_ENTRY_FILE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("validation OK")
    assert "follow_up_matches_index" in out

    bad = write(tmp_path / "Data_Entry.csv", entry_text.replace("80,M,PA", "80,M,XX", 1))
    assert validate_main([str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["blocking_failures"] == 1
    view = next(o for o in report["outcomes"] if o["check"] == "view_valid")
    assert view["unexpected_count"] == 1
    assert view["examples"][0]["line"] == 5
    assert view["severity"] == "blocking"

    assert validate_main([str(BBOX_FILE)]) == 1
    assert "[blocking] bbox.label_in_vocabulary" in capsys.readouterr().out

    odd = write(tmp_path / "odd.csv", "a,b\n1,2\n")
    assert validate_main([str(odd)]) == 2
    assert "odd.csv: unknown header" in capsys.readouterr().err
    png = next((REFERENCE / "images").glob("*.png"))
    assert validate_main([str(png), "--json"]) == 2
    assert png.name in json.loads(capsys.readouterr().out)["error"]
    assert validate_main([str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: cannot read" in capsys.readouterr().err


def test_loader_quirks_are_in_the_summary_and_json(tmp_path: Path) -> None:
    boxes = write(tmp_path / "boxes.csv", BOX_HEADER + "00000002_000.png,Infiltrate,1,1,10,10\n")
    report = validate_files([boxes])
    assert report.notes == {str(boxes): {"infiltrate_renamed": 1}}
    assert f"  {boxes}: bbox/nih (infiltrate_renamed=1)" in report.summary_text().splitlines()
    assert report.to_json()["notes"] == {str(boxes): {"infiltrate_renamed": 1}}
    assert [o.check for o in report.outcomes if o.check == "image_known"] == []  # no Data_Entry given
