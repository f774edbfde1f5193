"""``cxr releases list|show|download`` as a user reads them: sizes, the latest mark, a release's summary lines, what
a download takes and reports."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import releases
from pipeline.cli.commands import build_parser
from pipeline.errors import InvalidNameError, UsageError
from pipeline.read.download import GROUPS, DownloadResult

MANIFEST: dict[str, Any] = {
    "version": "2026.11.26",
    "published_at": "2026-11-26T02:14:00+00:00",
    "created_by_run": "scheduled__2026-11-26",
    "parent": "2026.11.25",
    "pipeline_version": "0.1.0",
    "input_fingerprint": "ab" * 32,
    "split_mode": "official",
    "config": {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.2},
    "images": 11,
    "counts": {"train": 8, "val": 1, "test": 2},
    "patients": {"train": 5, "val": 1, "test": 2},
    "quarantined": 1,
    "files": [{"path": "a", "size": 1536}, {"path": "b", "size": 1024}],
    "validation": {"ok": True, "expectations": 42, "warnings": 1},
}


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 << 30, "5.0 GiB"), (3 << 50, "3072.0 TiB")]
)
def test_sizes_are_given_in_binary_units(size: int, text: str) -> None:
    assert releases.human_size(size) == text


def test_a_list_row_marks_the_latest_release_and_adds_up_its_files() -> None:
    row = releases._row("2026.11.26", MANIFEST, latest="2026.11.26")
    assert row.startswith("2026.11.26      *      11       8       1       2")
    assert row.endswith("2.5 KiB  2026.11.25")
    assert "*" not in releases._row("2026.11.26", MANIFEST, latest="v9")


def test_show_names_the_release_its_splits_and_its_validation() -> None:
    lines = releases._show_lines(MANIFEST, latest="2026.11.26")
    assert lines[0] == "release 2026.11.26  (latest)"
    assert "  train              8 images        5 patients" in lines
    assert "  quarantined        1" in lines
    assert "  validation  ok: 42 expectations, 1 warnings" in lines
    assert lines[-1] == "  card        README.md, croissant.json (beside manifest.json)"


def test_show_lists_each_annotation_layer_with_its_coverage_and_files() -> None:
    layer = {"id": "google", "kind": "expert_labels", "variant": "google2019", "images_covered": 4374,
             "files": [{"name": "test_labels.csv"}, {"name": "validation_labels.csv"}]}  # fmt: skip
    lines = releases._show_lines({**MANIFEST, "annotations": [layer]}, latest=None)
    assert (
        "  layer       google: expert_labels (google2019), 4,374 images covered, from test_labels.csv, "
        "validation_labels.csv"
    ) in lines


PROVENANCE: dict[str, Any] = {
    "pipeline_version": "0.1.0",
    "orchestrator": "airflow",
    "run_id": "scheduled__2026-11-26",
    "logical_date": "2026-11-26T02:00:00+00:00",
    "bundle_name": "cxr-dags",
    "bundle_version": "9f8e7d6c",
    "code": None,
}


def _provenance_block(provenance: dict[str, Any]) -> list[str]:
    lines = releases._show_lines({**MANIFEST, "provenance": provenance}, latest=None)
    start = lines.index("  provenance")
    return lines[start : lines.index("  card        README.md, croissant.json (beside manifest.json)")]


def test_show_says_which_bundle_version_and_run_made_the_release_and_who_approved_it() -> None:
    review = {"decision": "approved", "by": "alice", "at": "2026-12-02T10:00Z", "comment": "looks right",
              "via": "airflow"}  # fmt: skip
    assert _provenance_block({**PROVENANCE, "review": review}) == [
        "  provenance",
        "    pipeline      0.1.0",
        "    code          bundle cxr-dags@9f8e7d6c",
        "    run           scheduled__2026-11-26 (airflow)",
        "    logical date  2026-11-26T02:00:00+00:00",
        "    review        approved by alice at 2026-12-02T10:00Z via airflow: looks right",
    ]


def test_show_names_the_git_commit_of_a_cli_run_and_says_when_it_had_uncommitted_changes() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    cli = {**PROVENANCE, "orchestrator": "cli", "run_id": "cli-20261202T100000-abcdef", "logical_date": None,
           "bundle_name": None, "bundle_version": None, "code": {"commit": sha, "dirty": True}}  # fmt: skip
    block = _provenance_block(cli)
    assert f"    code          git commit {sha} (uncommitted changes)" in block
    assert "    run           cli-20261202T100000-abcdef (cli)" in block
    assert "    logical date  -" in block
    assert not any(line.startswith("    review") for line in block), "no review line for a run without review"
    clean = _provenance_block({**cli, "code": {"commit": sha, "dirty": False}})
    assert f"    code          git commit {sha}" in clean


def test_show_names_an_unversioned_bundle_with_the_commit_it_fell_back_to() -> None:
    local = {**PROVENANCE, "bundle_name": "dags-folder", "bundle_version": None, "code": None}
    assert "    code          bundle dags-folder (unversioned)" in _provenance_block(local)
    review = {"decision": "approved", "by": None, "at": "2026-12-02T10:00:00Z", "comment": "", "via": "--approve"}
    assert _provenance_block({**local, "review": review})[-1] == (
        "    review        approved at 2026-12-02T10:00:00Z via --approve"
    )


def test_show_prints_no_provenance_for_a_release_published_before_it_was_recorded() -> None:
    lines = releases._show_lines(MANIFEST, latest=None)
    assert not any("provenance" in line for line in lines)
    assert lines[-1] == "  card        README.md, croissant.json (beside manifest.json)"


def test_a_release_argument_is_checked_before_the_store_is_asked() -> None:
    releases._check_versions("latest", "v1")
    with pytest.raises(InvalidNameError, match=r"'\.\./v1' must match"):
        releases._check_versions("latest", "../v1")


def _download_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["releases", "download", "latest", "/data", *extra])


def test_download_takes_the_parts_asked_for_in_one_or_several_only_flags() -> None:
    assert _download_args().only is None
    assert _download_args("--only", "parquet", "card", "--only", "metadata").only == ["parquet", "card", "metadata"]
    assert tuple(GROUPS) == releases.DOWNLOAD_PARTS  # the CLI's choices are the library's groups


def test_download_refuses_a_part_that_is_not_one_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _download_args("--only", "pixels")
    assert exit_info.value.code == 2
    assert "invalid choice: 'pixels'" in capsys.readouterr().err


def test_download_refuses_no_workers_before_the_store_is_asked() -> None:
    with pytest.raises(UsageError, match="--workers 0: give at least 1"):
        releases.cmd_download(_download_args("--workers", "0"))


def test_download_says_what_it_fetched_and_what_it_kept() -> None:
    root = Path("/data/2026.11.26")
    result = DownloadResult("2026.11.26", root, (root / "a", root / "b", root / "c"), fetched=2, resumed=1, kept=1,
                            bytes_fetched=3 << 20, bytes_total=5 << 20, manifest=root / "manifest.json")  # fmt: skip
    assert releases._download_lines(result) == [
        "release 2026.11.26: 3 files (5.0 MiB) in /data/2026.11.26, each matching the manifest's SHA-256",
        "  fetched        2 files (3.0 MiB from the store, 1 resumed from a .part)",
        "  kept           1 files already there and matching",
        "  manifest  /data/2026.11.26/manifest.json (written last)",
    ]


def test_download_bar_counts_mebibytes_and_ends_its_line() -> None:
    out = io.StringIO()
    bar = releases.ByteBar("download 2026.11.26 MiB", out)
    bar(3 << 20, 10 << 20)
    bar.draw(finished=True)
    text = out.getvalue()
    assert "] 3/10" in text
    assert text.endswith("\n")
