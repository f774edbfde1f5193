"""The reviewer's brief says what approving would publish: counts, validation, quarantine, changes, the card."""

from __future__ import annotations

from typing import Any

from pipeline.review.brief import LISTED_FAILURES, brief
from pipeline.review.staging import Staged


def _staged(**manifest: Any) -> Staged:
    base = {
        "counts": {"train": 70, "val": 10, "test": 20},
        "patients": {"train": 30, "val": 4, "test": 9},
        "quarantined": 3,
        "quarantine_reasons": {"undecodable_image": 2, "bbox_image_quarantined": 1, "duplicate_row": 0},
        "validation": {"expectations": 40, "blocking_failures": 0, "warnings": 1, "failed": []},
    }
    summary = {"card": "s3://b/cxr/releases/v2/README.md"}
    return Staged("v2", "run-7", "f" * 64, summary, {**base, **manifest})


def test_the_brief_has_counts_quarantine_card_and_what_each_answer_does() -> None:
    text = brief(_staged(), timeout_text="24 hours")
    assert "**Release v2** is staged by run `run-7`" in text
    assert "| train | 70 | 30 |" in text
    assert "| **all** | 100 | 43 |" in text
    assert "3 item(s) quarantined" in text
    assert "  - 2: image cannot be decoded (found at conversion)" in text
    assert "duplicate_row" not in text, "reasons with no item are left out"
    assert "s3://b/cxr/releases/v2/README.md" in text
    assert "No answer within 24 hours counts as a rejection." in text
    assert "no earlier release" in text


def test_blocking_failures_come_first_and_long_lists_are_cut() -> None:
    failed = [{"severity": "warning", "suite": "data_entry", "check": f"w{i}", "column": "age"} for i in range(30)]
    failed.append({"severity": "blocking", "suite": "data_entry", "check": "ids_unique", "unexpected_count": 4})
    validation = {"expectations": 40, "blocking_failures": 1, "warnings": 30, "failed": failed}
    text = brief(_staged(validation=validation))
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  - "))
    assert lines[first] == "  - blocking: data_entry / ids_unique (4 unexpected)"
    assert "1 blocking failure(s), 30 warning(s)" in text
    assert f"and {31 - LISTED_FAILURES} more" in text


def test_changes_since_the_parent_are_counted_per_kind_and_layer() -> None:
    text = brief(
        _staged(
            parent="v1",
            diff_from_parent={"added": 5, "removed": 1, "relabelled": 2, "moved": 0, "unchanged": 92},
            layer_diff_from_parent={"expert": {"added": 3, "changed": 1}},
        )
    )
    assert "since release v1: 5 added, 1 removed, 2 relabelled, 0 moved; 92 unchanged" in text
    assert "layer expert: 3 added, 1 changed" in text
