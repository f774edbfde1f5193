"""The validation outcomes and report: what the summary, the JSON and a blocked run tell the user."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.curate.metadata import LoadedTable, load_data_entry
from pipeline.curate.outcomes import ExpectationOutcome, Severity, SuiteRun, ValidationReport, raise_if_blocking
from pipeline.curate.quarantine import ROW_DEFECT_COLUMNS
from pipeline.curate.validate import validate_data_entry, validate_files
from pipeline.errors import BadDataError, BlockingValidationError
from tests.reference import DATA_ENTRY_FILE

BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"


@pytest.fixture(scope="module")
def entry_text() -> str:
    return DATA_ENTRY_FILE.read_text()


def entry_with(text: str, old: str, new: str) -> LoadedTable:
    assert old in text
    return load_data_entry(text.replace(old, new, 1).encode(), "edited.csv")


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


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


def test_many_quarantined_rows_are_listed_briefly(tmp_path: Path) -> None:
    rows = "".join(f"{n:08d}_000.png,Mass,{n % 900},1,5,5\n" for n in range(1, 201))
    rows += "".join(f"{n:08d}_000.png,Flu{'x' * 500},1,1,5,5\n" for n in range(300, 330))
    report = validate_files([write(tmp_path / "boxes.csv", BOX_HEADER + rows)])
    assert report.ok
    assert len(report.row_defects) == 30
    text = report.summary_text()
    assert "... and 10 more" in text
    assert max(len(line) for line in text.splitlines()) < 1000
    assert "(503 chars)" in text


def outcome(
    check: str, severity: Severity = "warning", *, success: bool = False, quarantines: bool = False
) -> ExpectationOutcome:
    return ExpectationOutcome(
        suite="bbox", expectation="expect_column_values_to_be_in_set", column="label", severity=severity,
        success=success, unexpected_count=0 if success else 1, element_count=3,
        examples=[] if success else [{"line": 4, "label": "F" * 200}], description=f"{check}: 1 of 3 rows fail",
        check=check, quarantines_rows=quarantines,
    )  # fmt: skip


def defects(file: str, lines: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {"kind": "bbox", "file": file, "line": lines, "image_index": [f"{n:08d}_000.png" for n in lines],
         "reason": "label 'Flu' is not one of the 8 bounding-box findings"}
    )[list(ROW_DEFECT_COLUMNS)]  # fmt: skip


def test_an_outcome_renders_as_one_line_with_short_examples() -> None:
    line = outcome("label_in_vocabulary", quarantines=True).render()
    assert line.startswith("[warning] bbox.label_in_vocabulary (expect_column_values_to_be_in_set on label): ")
    assert "; those rows are quarantined | e.g. line=4, label='" + "F" * 80 + "... (200 chars)'" in line
    assert "quarantined" not in outcome("label_in_vocabulary", success=True, quarantines=True).render()


def test_quarantined_rows_are_listed_in_file_and_line_order_and_do_not_block() -> None:
    boxes = SuiteRun("bbox", [outcome("label_in_vocabulary", quarantines=True)], None, defects("b.csv", [9, 3]))
    lists = SuiteRun("split_lists", [outcome("name_pattern", quarantines=True)], None, defects("a.txt", [5]))
    runs = [boxes, lists]
    report = ValidationReport.from_runs(runs, {"b.csv": "bbox/nih"})
    assert report.ok
    assert list(zip(report.row_defects["file"], report.row_defects["line"], strict=True)) == [
        ("a.txt", 5), ("b.csv", 3), ("b.csv", 9)
    ]  # fmt: skip
    lines = report.summary_text().splitlines()
    assert lines[0] == "validation OK: 2 expectations, 0 blocking failures, 2 warnings, 3 rows quarantined"
    assert "    a.txt line 5 (00000005_000.png): label 'Flu' is not one of the 8 bounding-box findings" in lines
    data = report.to_json()
    assert (data["quarantined_rows"], data["warnings"], data["row_defects"][0]["line"]) == (3, 2, 5)
    assert type(data["row_defects"][0]["line"]) is int  # plain JSON, not numpy


def test_the_json_report_holds_the_first_thousand_rows_and_the_full_count() -> None:
    run = SuiteRun(
        "bbox", [outcome("label_in_vocabulary", quarantines=True)], None, defects("b.csv", [*range(2, 1502)])
    )
    data = ValidationReport.from_runs([run], {}).to_json()
    assert data["quarantined_rows"] == 1500
    assert len(data["row_defects"]) == 1000


def test_a_blocked_run_says_why_and_survives_a_trip_between_processes() -> None:
    import pickle

    report = ValidationReport([outcome("image_index_unique", "blocking"), outcome("box_unique")], {})
    assert not report.ok
    assert [o.check for o in report.blocking_failures] == ["image_index_unique"]
    with pytest.raises(
        BlockingValidationError, match=r"^1 blocking expectation\(s\) failed:\n  \[blocking\] bbox"
    ) as caught:
        raise_if_blocking(report)
    assert isinstance(caught.value, BadDataError)
    assert not caught.value.retryable
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # Airflow and executors pickle errors
    assert report.summary_text().startswith("validation BLOCKED: 2 expectations, 1 blocking failures, 1 warnings")
