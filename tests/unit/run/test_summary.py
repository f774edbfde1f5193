"""pipeline.run.summary: the sentences a run ends with, and that the dag-processor can import them cheaply."""

from __future__ import annotations

import subprocess
import sys

from pipeline.run.summary import failure_text, outcome_text, release_event_text, run_lines, run_summary

HEAVY = ("pandas", "pyarrow", "boto3", "botocore", "great_expectations", "PIL", "numpy", "airflow", "s3fs")
PUBLISHED = {"version": "2026.11.26", "published": True, "counts": {"train": 8}, "quarantined": 1, "manifest": "m"}
BY_KIND = {
    "quarantined_by_kind": {"images": 2, "box_rows": 1, "split_list_rows": 0},
    "not_in_source": {"data_entry_rows": 0, "boxes": 984, "split_list_names": 94_143},
}


def test_importing_the_summaries_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys; import pipeline.run.summary; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_summary_says_what_was_published_or_where_it_failed() -> None:
    assert "published release 2026.11.26 (train 8; 1 quarantined)" in run_summary("d", "r", PUBLISHED, None)
    unchanged = {**PUBLISHED, "published": False}
    assert "nothing new was published" in run_summary("d", "r", unchanged, None)
    dry = {"version": "2026.11.27", "dry_run": True, "unchanged": False, "counts": {}, "quarantined": 0}
    assert "dry run: would publish release 2026.11.27" in run_summary("d", "r", dry, None)
    failed = {"task": "extract_shard", "map_index": 3, "try_number": 1, "reason": "BadDataError: truncated zip"}
    text = run_summary("d", "r", None, failed)
    assert "failed at task extract_shard[3] on try 1: BadDataError: truncated zip" in text


def test_losses_are_told_apart_from_what_the_source_does_not_hold() -> None:
    text = outcome_text({**PUBLISHED, **BY_KIND})
    assert "quarantined: 2 images, 1 box row; not in this source (subset): 94,143 split-list names, 984 boxes" in text


def test_a_run_without_an_outcome_or_a_failure_says_so() -> None:
    assert run_summary("nih_cxr_release", "r1", None, None) == (
        "nih_cxr_release run r1 succeeded, but left no summary (was publish skipped?)."
    )


def test_a_failure_without_a_task_or_reason_still_says_where_to_look() -> None:
    assert failure_text({"reason": None, "map_index": -1}) == "failed at task an unknown task: see the task's log."


def test_the_consumer_logs_each_release_with_its_counts() -> None:
    text = release_event_text("s3://b/p/releases/v1/manifest.json", {"version": "v1", "counts": {"train": 5}})
    assert text == "release v1 is ready at s3://b/p/releases/v1/manifest.json: train 5 images, 0 quarantined"


def test_cxr_run_prints_the_state_the_counts_and_what_was_lost_or_absent() -> None:
    lines = run_lines({**PUBLISHED, "counts": {"train": 8, "val": 1}, **BY_KIND})
    assert lines[0] == "release 2026.11.26: published"
    assert lines[1:3] == ["  train       8 images", "  val         1 images"]
    assert lines[3] == "  quarantined: 2 images, 1 box row"
    assert run_lines({**PUBLISHED, "published": False})[0] == "release 2026.11.26: unchanged (nothing new published)"
    dry = run_lines({"version": "v2", "dry_run": True, "unchanged": False, "published": False, "counts": {}})
    assert dry[0] == "release v2: would be published (dry run)"
