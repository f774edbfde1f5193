"""What `cxr releases diff` reports between two metadata tables, the primary labels and each annotation layer."""

from __future__ import annotations

import json
from typing import cast

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.publish import diff
from pipeline.store.storage import Store


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


EXPERT_TYPE = pa.struct([("pneumothorax", pa.bool_()), ("set_id", pa.string())])


def _with_layer(table: pa.Table, values: list[dict[str, object] | None]) -> pa.Table:
    return table.append_column("google", pa.array(values, type=EXPERT_TYPE))


def test_a_changed_layer_is_reported_beside_the_primary_changes() -> None:
    old = _with_layer(OLD, [{"pneumothorax": True, "set_id": "test"}, {"pneumothorax": False, "set_id": "test"}, None])
    new = _with_layer(NEW, [{"pneumothorax": False, "set_id": "test"}, None, {"pneumothorax": None, "set_id": "val"}])
    changes = diff.diff_tables(old, new, "a", "b", same_split_settings=False)
    assert changes.counts() == {"added": 1, "removed": 1, "relabelled": 1, "moved": 1, "unchanged": 1}
    layer = changes.layers["google"]
    assert layer.counts() == {"added": 1, "removed": 1, "changed": 1, "unchanged": 0}
    assert (layer.added, layer.removed) == (["00000004_000.png"], ["00000002_000.png"])
    text = diff.render_text(changes)
    assert "layer google\n  added             1\n  removed           1\n  changed           1" in text
    assert "    00000001_000.png: pneumothorax=true -> pneumothorax=false" in text
    data = json.loads(diff.render_json(changes))
    assert data["layers"]["google"]["changed"] == [
        {"image_index": "00000001_000.png", "before": "pneumothorax=true", "after": "pneumothorax=false"}
    ]


def test_a_layer_new_in_this_release_covers_nothing_in_the_old_one() -> None:
    new = _with_layer(NEW, [None, {"pneumothorax": True, "set_id": "test"}, None])
    changes = diff.diff_tables(OLD, new, "a", "b", same_split_settings=True)
    assert changes.layers["google"].added == ["00000002_000.png"]
    assert "layer google (new: not in release a)" in diff.render_text(changes)
    assert diff.diff_tables(OLD, NEW, "a", "b", True).layers == {}
    assert "layer" not in diff.render_text(diff.diff_tables(OLD, NEW, "a", "b", True))


def test_json_caps_a_layer_s_lists_but_not_its_counts() -> None:
    many = [(f"{i:08d}_000.png", ["No Finding"], "train") for i in range(30)]
    new = _with_layer(_table(many), [{"pneumothorax": True, "set_id": "test"}] * 30)
    capped = diff.diff_tables(_table(many), new, "a", "b", True).to_json(limit=3)["layers"]["google"]
    assert (capped["counts"]["added"], len(capped["added"])) == (30, 3)
    assert "... and 25 more (use --json for all)" in diff.render_text(
        diff.diff_tables(_table(many), new, "a", "b", True), 5
    )


class _Bytes:
    """A store that holds one release's metadata.parquet."""

    def __init__(self, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.body: bytes = sink.getvalue().to_pybytes()

    def get_bytes(self, key: str) -> bytes:
        assert key == "releases/r1/metadata.parquet", key
        return self.body


def test_read_metadata_reads_the_layers_the_manifest_lists() -> None:
    full = _with_layer(OLD, [None, None, {"pneumothorax": True, "set_id": "val"}]).append_column(
        "patient_id", pa.array([1, 2, 3])
    )
    store = cast(Store, _Bytes(full))
    with_layers = diff.read_metadata(store, "r1", {"annotations": [{"id": "google", "kind": "expert_labels"}]})
    assert with_layers.column_names == ["image_index", "labels", "split", "google"]
    assert diff.read_metadata(store, "r1", {"version": "r1"}).column_names == diff.DIFF_COLUMNS
