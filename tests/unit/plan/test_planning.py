"""The plan's own parts: units cut by size and count within a split, each patient's image order, the input
fingerprint that decides "unchanged", and official splits taken from NIH's test list."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd

from pipeline.config import RunConfig, StoreConfig
from pipeline.plan.planning import Unit, assign, balanced_cuts, cut_units, fingerprint, patient_order

CFG = RunConfig(source="/nowhere", store=StoreConfig("s3://bucket/p"), run_id="r")


def _unit_runs(numbered: pd.DataFrame, split: str) -> list[list[int]]:
    """The split's rows (positions in its own order) of each unit, in unit order."""
    units = numbered.loc[numbered["split"] == split, "unit"].tolist()
    return [[i for i, u in enumerate(units) if u == k] for k in sorted(set(units))]


def test_units_keep_within_the_target_and_are_numbered_per_split_without_gaps() -> None:
    frame = pd.DataFrame(
        {
            "split": ["train", "val", "train", "train", "test", "train", "val"],
            "size": [40, 10, 50, 30, 500, 10, 10],
        }
    )
    numbered, units = cut_units(frame, target_bytes=100)
    assert units == [
        Unit("train", 0, 1, 40),  # 130 bytes: two units, cut where the shares come nearest to 65 each
        Unit("train", 1, 3, 90),
        Unit("val", 0, 2, 20),
        Unit("test", 0, 1, 500),  # an image over the target is a unit of its own, never dropped
    ]
    assert numbered["unit"].tolist() == [0, 0, 1, 1, 0, 1, 0]
    assert [u.name for u in units] == ["train-000000", "train-000001", "val-000000", "test-000000"]
    assert sum(u.images for u in units) == len(frame)


def test_every_split_gets_min_shards_contiguous_units_balanced_in_bytes() -> None:
    rng = np.random.default_rng(3)
    splits = rng.choice(["train", "val", "test"], size=400, p=[0.7, 0.2, 0.1])
    frame = pd.DataFrame({"split": splits, "size": rng.integers(1_000, 9_000, size=400)})
    numbered, units = cut_units(frame, target_bytes=10**9, min_shards=8)  # the size cap alone: one unit a split
    for name in ("train", "val", "test"):
        mine = [u for u in units if u.split == name]
        assert [u.index for u in mine] == list(range(8))
        runs = _unit_runs(numbered, name)
        assert [i for run in runs for i in run] == list(range(int((splits == name).sum()))), "contiguous, in order"
        sizes = [u.bytes for u in mine]
        assert max(sizes) - min(sizes) <= 9_000, f"{name}: {sizes} differ by more than one image"
        assert sum(sizes) == int(frame.loc[frame["split"] == name, "size"].sum())


def test_a_split_with_fewer_images_than_min_shards_gets_one_unit_per_image() -> None:
    frame = pd.DataFrame({"split": ["val"] * 3 + ["train"] * 20, "size": [5, 6, 7] + [1] * 20})
    _, units = cut_units(frame, target_bytes=1 << 30, min_shards=8)
    assert [(u.index, u.images) for u in units if u.split == "val"] == [(0, 1), (1, 1), (2, 1)]
    assert sorted(u.images for u in units if u.split == "train") == [2, 2, 2, 2, 3, 3, 3, 3]
    assert not [u for u in units if u.split == "test"], "an empty split has no unit"


def test_the_size_cap_wins_over_min_shards_when_it_asks_for_more_units() -> None:
    sizes = [60, 60, 60, 1, 1, 1, 500, 1]
    _, units = cut_units(pd.DataFrame({"split": "train", "size": sizes}), target_bytes=100, min_shards=2)
    assert all(u.bytes <= 100 or u.images == 1 for u in units)
    assert [u.images for u in units] == [1, 1, 4, 1, 1]  # the fewest units within 100 bytes: 5
    six = balanced_cuts(np.array(sizes), 100, 6)
    assert (len(six), six[0], six[-1]) == (7, 0, len(sizes)), "six parts when asked for six"
    assert all(a < b for a, b in itertools.pairwise(six)), "none empty"
    assert all(sum(sizes[a:b]) <= 100 or b - a == 1 for a, b in itertools.pairwise(six))


def test_patient_order_counts_each_patients_images_by_follow_up() -> None:
    frame = pd.DataFrame(
        {
            "patient_id": [7, 3, 7, 3, 9, 7],
            "follow_up": [2, 0, 0, 1, 4, 1],
            "image_index": ["7_2", "3_0", "7_0", "3_1", "9_4", "7_1"],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    order = patient_order(frame)
    assert order.tolist() == [2, 0, 0, 1, 0, 1]
    assert order.index.tolist() == frame.index.tolist()
    assert str(order.dtype) == "int64"


def test_the_fingerprint_follows_the_content_and_nothing_else() -> None:
    shards, files = {"images_001.zip": "a" * 64}, {"Data_Entry_2017_v2020.csv": "b" * 64}
    base = fingerprint(CFG, "official", shards, files)
    assert fingerprint(replace(CFG, upload_workers=1, run_id="other"), "official", shards, files) == base
    changed = [
        fingerprint(replace(CFG, seed=1), "official", shards, files),
        fingerprint(replace(CFG, val_fraction=0.2), "official", shards, files),
        fingerprint(replace(CFG, variant_size=None), "official", shards, files),
        fingerprint(replace(CFG, shard_target_bytes=1 << 20), "official", shards, files),
        fingerprint(replace(CFG, min_shards=1), "official", shards, files),
        fingerprint(CFG, "patient-hash", shards, files),
        fingerprint(CFG, "official", {"images_001.zip": "c" * 64}, files),
        fingerprint(CFG, "official", shards, {"Data_Entry_2017_v2020.csv": "d" * 64}),
    ]
    assert len({base, *changed}) == len(changed) + 1


def test_official_splits_put_every_image_of_a_listed_patient_in_test() -> None:
    frame = pd.DataFrame({"patient_id": [1, 1, 2, 3, 3], "image_index": [f"i{i}" for i in range(5)]})
    lists = {"test": ["00000003_000.png"], "train_val": ["00000001_000.png", "00000002_000.png"]}
    out, mode = assign(frame, CFG, lists)
    assert mode == "official"  # auto, with the lists present
    assert out.loc[out["patient_id"] == 3, "split"].tolist() == ["test", "test"]
    assert set(out.loc[out["patient_id"] != 3, "split"]) <= {"train", "val"}
    _, hashed = assign(frame, CFG, {})
    assert hashed == "patient-hash"
