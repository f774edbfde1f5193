"""What `cxr releases diff` reports between two metadata tables."""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.publish import diff


def _table(rows: list[tuple[str, list[str], str]]) -> pa.Table:
    return pa.table(
        {
            "image_index": [r[0] for r in rows],
            "labels": pa.array([r[1] for r in rows], type=pa.list_(pa.string())),
            "split": [r[2] for r in rows],
        }
    )


OLD = _table(
    [
        ("00000001_000.png", ["Effusion", "Mass"], "train"),
        ("00000002_000.png", ["No Finding"], "test"),
        ("00000003_000.png", ["Nodule"], "val"),
    ]
)
NEW = _table(
    [
        ("00000001_000.png", ["Mass", "Effusion"], "train"),  # same set, other order: unchanged
        ("00000002_000.png", ["Hernia"], "train"),  # relabelled and moved
        ("00000004_000.png", ["No Finding"], "test"),  # added
    ]
)


def test_diff_counts_added_removed_relabelled_and_moved() -> None:
    changes = diff.diff_tables(OLD, NEW, "a", "b", same_split_settings=False)
    assert changes.counts() == {"added": 1, "removed": 1, "relabelled": 1, "moved": 1, "unchanged": 1}
    assert changes.added == ["00000004_000.png"]
    assert changes.removed == ["00000003_000.png"]
    assert changes.relabelled == [diff.Change("00000002_000.png", "No Finding", "Hernia")]
    assert changes.moved == [diff.Change("00000002_000.png", "test", "train")]


def test_moves_under_the_same_split_settings_are_flagged_as_a_bug() -> None:
    flagged = diff.render_text(diff.diff_tables(OLD, NEW, "a", "b", same_split_settings=True))
    assert "WARNING: 1 images changed split although both releases use the same split settings" in flagged
    explained = diff.render_text(diff.diff_tables(OLD, NEW, "a", "b", same_split_settings=False))
    assert "WARNING" not in explained
    assert "split settings (mode, seed, fractions or NIH's split lists) differ" in explained


def test_text_report_caps_examples_but_json_lists_everything() -> None:
    many_old = _table([(f"{i:08d}_000.png", ["No Finding"], "train") for i in range(30)])
    changes = diff.diff_tables(many_old, _table([]), "a", "b", same_split_settings=True)
    text = diff.render_text(changes, limit=5)
    assert "  removed          30" in text
    assert "... and 25 more (use --json for all)" in text
    assert len(json.loads(diff.render_json(changes))["removed"]) == 30


def test_official_split_lists_count_as_split_settings() -> None:
    def manifest(test_list_sha: str) -> dict[str, object]:
        return {
            "split_mode": "official",
            "config": {"split_mode": "auto", "seed": 0, "val_fraction": 0.1, "test_fraction": 0.2},
            "sources": {"files_sha256": {"test_list.txt": test_list_sha, "train_val_list.txt": "t"}},
        }

    assert diff.split_settings(manifest("x")) == diff.split_settings(manifest("x"))
    assert diff.split_settings(manifest("x")) != diff.split_settings(manifest("y"))
