"""GX Data Docs of a validation: every expectation is shown, and the pages need nothing from the internet."""

from __future__ import annotations

import html
import json
import re

import pytest

from pipeline.curate.datadocs import EXTERNAL_ASSET_RE, build_data_docs, strip_external_assets
from pipeline.curate.outcomes import ValidationReport
from pipeline.curate.suites import SUITES_DIR
from pipeline.curate.validate import validate_files
from tests.reference import BBOX_FILE, DATA_ENTRY_FILE

ANY_URL = re.compile(r"https?://", re.IGNORECASE)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ValidationReport:
    folder = tmp_path_factory.mktemp("lists")
    (folder / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n")
    (folder / "test_list.txt").write_text("00000002_000.png\n")
    return validate_files([DATA_ENTRY_FILE, BBOX_FILE, folder / "train_val_list.txt", folder / "test_list.txt"])


@pytest.fixture(scope="module")
def docs(report: ValidationReport) -> dict[str, str]:
    return {name: page.decode() for name, page in build_data_docs(report.runs, report.variants).items()}


def test_one_page_per_suite_and_an_index(docs: dict[str, str]) -> None:
    assert sorted(docs) == ["bbox.html", "data_entry.html", "index.html", "split_lists.html"]
    for page in ("bbox.html", "data_entry.html", "split_lists.html"):
        assert f'href="{page}"' in docs["index.html"]
        assert 'href="index.html"' in docs[page]


@pytest.mark.parametrize("suite", ["data_entry", "bbox", "split_lists"])
def test_every_expectation_is_on_the_index_and_its_suite_page(docs: dict[str, str], suite: str) -> None:
    index, page = html.unescape(docs["index.html"]), html.unescape(docs[f"{suite}.html"])
    expectations = json.loads((SUITES_DIR / f"{suite}.json").read_text())["expectations"]
    for spec in expectations:
        assert spec["meta"]["check"] in index
        assert spec["type"] in page
        assert spec["description"] in page  # drawn by GX's own renderer
    assert "Great Expectations" in page


def test_failures_show_severity_count_and_example_rows(docs: dict[str, str]) -> None:
    index = html.unescape(docs["index.html"])
    # the real box list's bad row is a warning (the row is quarantined), not a blocking failure
    assert "Validation OK: 65 expectations, 0 blocking failures, 3 warnings" in index
    row = next(line for line in index.splitlines() if ">label_in_vocabulary<" in line and "bbox" in line)
    assert "warning" in row
    assert "FAILED" in row
    assert "1 of 985" in row
    assert "line=986, image_index='00000001_001.png', label='Cardiomegaly|Emphysema'" in row


@pytest.mark.parametrize("name", ["index.html", "data_entry.html", "bbox.html", "split_lists.html"])
def test_pages_render_offline(docs: dict[str, str], name: str) -> None:
    page = docs[name]
    assert not EXTERNAL_ASSET_RE.search(page)
    assert not ANY_URL.search(page), ANY_URL.findall(page)
    assert "<link" not in page
    assert not re.search(r"<script[^>]+src=", page)
    assert "<style>" in page


def test_same_results_give_the_same_bytes(report: ValidationReport, docs: dict[str, str]) -> None:
    again = build_data_docs(report.runs, report.variants)
    assert {name: page.decode() for name, page in again.items()} == docs


def test_an_external_reference_left_by_a_template_is_dropped() -> None:
    page = '<img src="https://cdn.example/logo.png"><a href="//x.org/a">x</a><div style="background: url(http://y)">'
    cleaned = strip_external_assets(page, "p.html")
    assert not EXTERNAL_ASSET_RE.search(cleaned)
    assert cleaned == '<img src="#"><a href="#">x</a><div style="background: url(#)">'


def test_a_report_without_gx_results_has_an_index_only() -> None:
    docs = build_data_docs([], {"x.csv": "data_entry/explicit"})
    assert list(docs) == ["index.html"]
    assert b"x.csv: data_entry/explicit" in docs["index.html"]


def test_validate_files_keeps_the_gx_results(report: ValidationReport) -> None:
    assert [run.suite for run in report.runs] == ["data_entry", "bbox", "split_lists"]
    assert [o for run in report.runs for o in run.outcomes] == report.outcomes
    assert report.runs[1].gx_result.success is False
    assert "ge_load_time" not in json.dumps(report.runs[0].gx_result.meta, default=str)
