"""The expectation-suite format and running it: a suite file that breaks the rules is refused by name, and a
``quarantine_row`` expectation names every failing row with its reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.curate.suites import GX_SEVERITY, SUITES_DIR, load_suite, run_suite, validate_frame
from pipeline.errors import PipelineError, SuiteError
from pipeline.nih import IMAGE_NAME_RE


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


def test_suite_with_unknown_expectation_type_raises(tmp_path: Path) -> None:
    payload = json.loads((SUITES_DIR / "bbox.json").read_text())
    payload["expectations"].append(
        {"type": "expect_box_to_be_pretty", "kwargs": {"column": "x"}, "meta": {"severity": "warning"}}
    )
    path = tmp_path / "bbox.json"
    path.write_text(json.dumps(payload))
    dropped = r"loaded 23 of 24 expectations; dropped \['expect_box_to_be_pretty'\]"
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


def suite_file(tmp_path: Path, *expectations: dict[str, object]) -> Path:
    path = tmp_path / "custom.json"
    path.write_text(json.dumps({"name": "custom", "expectations": list(expectations)}))
    return path


def between(column: str, meta: dict[str, object], **extra: object) -> dict[str, object]:
    return {"type": "expect_column_values_to_be_between", "kwargs": {"column": column, "min_value": 0}, "meta": meta,
            **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("meta", "extra", "message"),
    [
        ({"severity": "blocking", "on_failure": "quarantine_row", "reason": "x"}, {},
         r"meta\.on_failure 'quarantine_row'; expected 'report' or 'quarantine_row' \(a warning with a meta\.reason"),
        ({"severity": "warning", "on_failure": "quarantine_row"}, {}, "a warning with a meta.reason template"),
        ({"severity": "warning", "on_failure": "drop"}, {}, "meta.on_failure 'drop'"),
        ({"severity": "fatal"}, {}, r"meta\.severity 'fatal'; expected 'blocking' or 'warning'"),
        ({"severity": "warning"}, {"severity": "critical"}, "severity 'critical' contradicts meta.severity 'warning'"),
    ],
)  # fmt: skip
def test_a_suite_breaking_the_meta_rules_is_refused_naming_file_and_expectation(
    tmp_path: Path, meta: dict[str, object], extra: dict[str, object], message: str
) -> None:
    path = suite_file(tmp_path, between("x", {"severity": "warning"}), between("x", meta, **extra))
    with pytest.raises(SuiteError, match=message) as caught:
        load_suite(path)
    assert str(caught.value).startswith(f"{path}: expectation 2 (expect_column_values_to_be_between)")


def test_a_suite_that_is_not_json_is_a_terminal_pipeline_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(SuiteError, match=rf"^{re.escape(str(path))}: cannot read expectation suite") as caught:
        load_suite(path)
    assert isinstance(caught.value, PipelineError)
    assert not caught.value.retryable


def test_quarantine_row_names_every_failing_row_with_its_reason(tmp_path: Path) -> None:
    reason = "x {x} of {name} is negative ({missing})"
    meta = {"severity": "warning", "check": "x_positive", "on_failure": "quarantine_row", "reason": reason}
    report = {"severity": "warning", "check": "y_positive"}
    path = suite_file(tmp_path, between("x", meta), between("y", report))
    frame = pd.DataFrame({"line": [2, 3, 4, 5], "x": [1, -2, 3, -4], "y": [-1, 1, 1, 1],
                          "name": ["a", "b", "n" * 300, "d"]})  # fmt: skip
    run = validate_frame("custom", frame, suite_path=path)
    assert [(o.check, o.success, o.quarantines_rows) for o in run.outcomes] == [
        ("x_positive", False, True), ("y_positive", False, False)
    ]  # fmt: skip
    assert run.defects is not None
    assert run.defects["line"].tolist() == [3, 5]  # the report-only failure of line 2 quarantines nothing
    assert run.defects["reason"].tolist() == ["x -2 of b is negative (?)", "x -4 of d is negative (?)"]
    skipped = validate_frame("custom", frame, suite_path=path, skip=("x_positive",))
    assert [o.check for o in skipped.outcomes] == ["y_positive"]
    assert skipped.defects is None


def test_a_long_value_in_a_reason_is_cut(tmp_path: Path) -> None:
    meta = {"severity": "warning", "check": "x_positive", "on_failure": "quarantine_row", "reason": "{name}: bad"}
    frame = pd.DataFrame({"line": [2, 3, 4], "x": [1, 1, -1], "name": ["a", "b", "n" * 300]})
    run = validate_frame("custom", frame, suite_path=suite_file(tmp_path, between("x", meta)))
    assert run.defects is not None
    assert run.defects["reason"].tolist() == ["n" * 80 + "... (300 chars): bad"]


def test_a_reader_only_install_is_told_how_to_install_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from pipeline.curate import suites
    from pipeline.errors import UsageError

    real = importlib.import_module

    def missing(name: str, *args: object) -> object:
        if name.startswith("great_expectations"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(suites.importlib, "import_module", missing)
    with pytest.raises(UsageError, match=r"pip install -e '\.\[pipeline\]'"):
        suites.gx("great_expectations.core.expectation_suite")
