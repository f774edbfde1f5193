"""What is checked in each metadata file, how severe each failure is, and ``cxr validate`` on local files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.curate.metadata import LoadedTable, load_bboxes, load_data_entry
from pipeline.curate.outcomes import ExpectationOutcome, ValidationReport
from pipeline.curate.quarantine import ROW_DEFECT_COLUMNS
from pipeline.curate.suites import SUITES_DIR
from pipeline.curate.validate import (
    validate_bboxes,
    validate_data_entry,
    validate_files,
    validate_main,
    validate_split_lists,
)
from pipeline.errors import DefectiveFileError, FileTooLargeError, UnreadableFileError
from pipeline.ingest.files import MAX_FILE_BYTES, check_size
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


def test_real_bbox_list_quarantines_its_extra_row_only(known: set[str]) -> None:
    table = load_bboxes(BBOX_FILE.read_bytes(), BBOX_FILE.name)
    run = validate_bboxes(table, known)
    assert failures(run.outcomes) == {"label_in_vocabulary", "image_known"}
    bad = failed(run.outcomes, "label_in_vocabulary")
    assert bad.severity == "warning"
    assert bad.quarantines_rows
    assert bad.unexpected_count == 1
    row = {"line": 986, "image_index": "00000001_001.png", "label": "Cardiomegaly|Emphysema"}
    assert bad.examples == [row]
    assert "those rows are quarantined" in bad.render()
    assert failed(run.outcomes, "image_known").severity == "warning"
    assert run.defects is not None
    assert list(run.defects.columns) == list(ROW_DEFECT_COLUMNS)
    assert run.defects.to_dict("records") == [
        {"kind": "bbox", "file": BBOX_FILE.name, "line": 986, "image_index": "00000001_001.png",
         "reason": "label 'Cardiomegaly|Emphysema' is not one of the 8 bounding-box findings"},
    ]  # fmt: skip
    assert ValidationReport.from_runs([run], {}).ok
    assert len(table.frame) - len(run.defects) == 984


GOOD_BOXES = "".join(f"000000{n:02d}_000.png,Mass,{n},10,100,20\n" for n in range(10, 20))


@pytest.mark.parametrize(
    ("row", "checks", "reason"),
    [
        ("00000001_000.png,Cardiomegaly|Emphysema,1,1,5,5", {"label_in_vocabulary"},
         "label 'Cardiomegaly|Emphysema' is not one of the 8 bounding-box findings"),
        ("00000001_000.png,Flu,1,1,5,5", {"label_in_vocabulary"}, "label 'Flu' is not one of the 8"),
        ("00000001_000.png,,1,1,5,5", {"label_in_vocabulary"}, "label '' is not one of the 8"),
        ("images/00000001_000.png,Mass,1,1,5,5", {"image_index_pattern"},
         "image name 'images/00000001_000.png' is not <8-digit patient>_<3-digit follow-up>.png"),
        ("00000001_000.png,Mass,one,1,5,5", {"x_present"}, "box x is not a number"),
        ("00000001_000.png,Mass,1,,5,5", {"y_present"}, "box y is not a number"),
        ("00000001_000.png,Mass,1,1,inf,5", {"w_present"}, "box w is not a number"),
        ("00000001_000.png,Mass,1,1,5,NaN", {"h_present"}, "box h is not a number"),
        ("00000001_000.png,Mass,-1,10,5,5", {"x_inside"}, "box x -1.0 is negative (outside the image)"),
        ("00000001_000.png,Mass,1,-0.5,5,5", {"y_inside"}, "box y -0.5 is negative"),
        ("00000001_000.png,Mass,1,1,0,5", {"w_positive"}, "box w 0.0 is not positive"),
        ("00000001_000.png,Mass,1,1,5,-3", {"h_positive"}, "box h -3.0 is not positive"),
        ("00000001_000.png,Mass,1000.5,10,100,20", {"x_end_inside"},
         "box ends at x 1100.5 (x + w), outside the 1024-pixel image"),
        ("00000001_000.png,Mass,10,1000,5,30", {"y_end_inside"}, "box ends at y 1030.0 (y + h)"),
        ("00000010_000.png,Mass,10,10,100,20", {"box_not_repeated", "box_unique"},
         "the same box (image, label, x, y, w, h) as line 2"),
        ("00000001_000.png,Nodule,-1,10,5,0", {"x_inside", "h_positive"},
         "box x -1.0 is negative (outside the image); box h 0.0 is not positive"),
    ],
)  # fmt: skip
def test_each_box_row_defect_is_quarantined_with_its_reason(row: str, checks: set[str], reason: str) -> None:
    table = box_table(GOOD_BOXES + row + "\n")
    run = validate_bboxes(table, None)
    assert failures(run.outcomes) == checks
    for check in checks - {"box_unique"}:
        outcome = failed(run.outcomes, check)
        assert (outcome.severity, outcome.quarantines_rows, outcome.unexpected_count) == ("warning", True, 1)
    assert run.defects is not None
    assert len(run.defects) == 1
    defect = run.defects.iloc[0]
    assert (defect["file"], defect["line"], defect["kind"]) == ("boxes.csv", 12, "bbox")
    assert reason in defect["reason"]
    assert ValidationReport.from_runs([run], {}).ok
    assert "image_known" not in {o.check for o in run.outcomes}


def test_two_different_boxes_of_one_image_and_label_are_kept_with_a_warning() -> None:
    run = validate_bboxes(box_table(GOOD_BOXES + "00000010_000.png,Mass,500,500,10,10\n"), None)
    assert failures(run.outcomes) == {"box_unique"}
    assert failed(run.outcomes, "box_unique").severity == "warning"
    assert run.defects is None


def test_a_box_list_mostly_defective_is_refused_as_a_file() -> None:
    rows = "00000001_000.png,Mass,1,1,5,5\n" + "00000002_000.png,Flu,1,1,5,5\n" * 2
    with pytest.raises(DefectiveFileError, match=r"boxes\.csv: 2 of 3 rows have defects \(e\.g\. line 3: label 'Flu'"):
        validate_bboxes(box_table(rows), None)


def test_unknown_box_image_is_a_warning(known: set[str]) -> None:
    table = box_table("00000001_000.png,Mass,1,1,1,1\n09999999_000.png,Mass,1,1,1,1\n")
    outcomes = validate_bboxes(table, known).outcomes
    unknown = failed(outcomes, "image_known")
    assert unknown.severity == "warning"
    assert unknown.examples[0]["image_index"] == "09999999_000.png"
    assert failures(outcomes) == {"image_known"}


def test_split_lists(known: set[str]) -> None:
    train = ["00000001_000.png", "00000001_001.png", "00000002_000.png", "bad.png", "00000001_002.png"]
    test = [(1, "00000003_000.png"), (3, "00000002_000.png"), (4, "00000002_000.png"), (5, "00000003_001.png"),
            (6, "00000003_002.png"), (7, "00000003_003.png")]  # fmt: skip
    run = validate_split_lists(train, test, known)
    expected = {"name_pattern", "lists_disjoint", "name_not_repeated", "name_known", "patients_disjoint"}
    assert failures(run.outcomes) == expected
    overlap = failed(run.outcomes, "lists_disjoint")
    assert (overlap.severity, overlap.quarantines_rows) == ("warning", True)
    assert overlap.unexpected_count == 3
    assert {"line": 3, "name": "00000002_000.png", "list": "train_val", "in_both": True} in overlap.examples
    assert failed(run.outcomes, "name_known").severity == "warning"
    assert not failed(run.outcomes, "name_known").quarantines_rows
    assert failed(run.outcomes, "name_pattern").examples == [{"line": 4, "list": "train_val", "name": "bad.png"}]
    assert run.defects is not None
    found = {(d["file"], d["line"]): d["reason"] for d in run.defects.to_dict("records")}
    in_both = "00000002_000.png is in both train_val_list.txt and test_list.txt: its split is unknown"
    assert found == {
        ("train_val_list.txt", 3): in_both,
        ("train_val_list.txt", 4): "'bad.png' is not an image name (<8-digit patient>_<3-digit follow-up>.png)",
        ("test_list.txt", 3): in_both,
        ("test_list.txt", 4): f"00000002_000.png repeats line 3 of the same list; {in_both}",
    }
    assert ValidationReport.from_runs([run], {}).ok


def test_a_split_list_mostly_defective_is_refused_as_a_file() -> None:
    html = ["<!DOCTYPE html>", "<html><body>Not found</body></html>", "00000001_000.png"]
    with pytest.raises(DefectiveFileError, match=r"^train_val_list\.txt: 2 of 3 rows have defects \(e\.g\. line 1: "):
        validate_split_lists(html, ["00000002_000.png"], None)
    same = ["00000001_000.png", "00000002_000.png"]
    with pytest.raises(DefectiveFileError, match=r"is in both train_val_list\.txt and test_list\.txt"):
        validate_split_lists(same, same, None)


def test_clean_split_lists_pass_without_data_entry() -> None:
    outcomes = validate_split_lists(["00000001_000.png"], ["00000002_000.png"], None).outcomes
    assert failures(outcomes) == set()
    assert "name_known" not in {o.check for o in outcomes}


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

    assert validate_main([str(DATA_ENTRY_FILE), str(BBOX_FILE)]) == 0  # warnings only: the bad row is quarantined
    out = capsys.readouterr().out
    assert out.startswith("validation OK")
    assert "0 blocking failures" in out
    assert "1 rows quarantined" in out
    assert "[warning] bbox.label_in_vocabulary" in out
    assert "those rows are quarantined" in out
    assert (
        f"    {BBOX_FILE} line 986 (00000001_001.png): label 'Cardiomegaly|Emphysema' is not one of the 8 "
        "bounding-box findings"
    ) in out.splitlines()
    assert validate_main([str(BBOX_FILE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["blocking_failures"], report["quarantined_rows"]) == (True, 0, 1)
    assert report["row_defects"][0]["line"] == 986
    assert report["warnings"] == 1

    mostly_bad = write(tmp_path / "BBox_bad.csv", BOX_HEADER + "00000001_000.png,Flu,1,1,5,5\n")
    assert validate_main([str(mostly_bad)]) == 2
    assert "BBox_bad.csv: 1 of 1 rows have defects" in capsys.readouterr().err

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


def test_cli_quarantines_split_list_lines_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"0000000{n}_000.png" for n in range(1, 8)]
    train = write(tmp_path / "train_val_list.txt", "\n".join([*names[:4], "readme.md", names[0]]) + "\n")
    test = write(tmp_path / "test_list.txt", "\n".join([*names[4:], names[3]]) + "\n")
    assert validate_main([str(train), str(test)]) == 0
    out = capsys.readouterr().out
    assert "4 rows quarantined" in out
    for line in (
        f"{train} line 4 (00000004_000.png): 00000004_000.png is in both train_val_list.txt and test_list.txt",
        f"{train} line 5 (readme.md): 'readme.md' is not an image name",
        f"{train} line 6 (00000001_000.png): 00000001_000.png repeats line 1 of the same list",
        f"{test} line 4 (00000004_000.png): 00000004_000.png is in both",
    ):
        assert any(text.strip().startswith(line) for text in out.splitlines()), line


def test_files_over_their_size_limit_are_refused_before_they_are_read(tmp_path: Path) -> None:
    import resource

    big = tmp_path / "BBox_List_2017.csv"
    with big.open("wb") as fh:  # a sparse 2 GB file: reading it would show in the peak RSS
        fh.write(BOX_HEADER.encode())
        fh.truncate(2 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FileTooLargeError, match=r"BBox_List_2017\.csv: 2,147,483,648 bytes, over the 16 MiB limit"):
        validate_files([big])
    assert validate_main([str(big)]) == 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: far below the file
    listed = write(tmp_path / "test_list.txt", b"")
    with listed.open("r+b") as fh:
        fh.truncate(40 << 20)
    with pytest.raises(FileTooLargeError, match="over the 32 MiB limit for a split list"):
        validate_files([listed])


def test_size_limits_are_per_kind_and_far_above_the_real_files() -> None:
    assert MAX_FILE_BYTES["data_entry"] >= 10 * 8_500_000
    assert MAX_FILE_BYTES["bbox"] >= 100 * 90_000
    assert MAX_FILE_BYTES["split_list"] >= 10 * 1_600_000
    check_size("BBox_List_2017.csv", MAX_FILE_BYTES["bbox"], "bbox")
    with pytest.raises(FileTooLargeError, match=r"Data_Entry_2017\.csv: 1,073,741,824 bytes, over the 128 MiB limit"):
        check_size("Data_Entry_2017.csv", 1 << 30, "data_entry")
    assert issubclass(FileTooLargeError, UnreadableFileError)
