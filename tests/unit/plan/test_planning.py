"""The plan's own parts: units cut by size within a split, the input fingerprint that decides "unchanged", and
official splits taken from NIH's test list."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from pipeline.config import RunConfig, StoreConfig
from pipeline.plan.planning import Unit, assign, cut_units, fingerprint

CFG = RunConfig(source="/nowhere", store=StoreConfig("s3://bucket/p"), run_id="r")


def test_units_fill_up_to_the_target_within_one_split_and_are_numbered_per_split() -> None:
    frame = pd.DataFrame(
        {
            "split": ["train", "val", "train", "train", "test", "train", "val"],
            "size": [40, 10, 50, 30, 500, 10, 10],
        }
    )
    numbered, units = cut_units(frame, target_bytes=100)
    assert units == [
        Unit("train", 0, 2, 90),  # 40 + 50; a third image (30) would pass 100
        Unit("train", 1, 2, 40),
        Unit("val", 0, 2, 20),
        Unit("test", 0, 1, 500),  # an image over the target is a unit of its own, never dropped
    ]
    assert numbered["unit"].tolist() == [0, 0, 0, 1, 0, 1, 0]
    assert [u.name for u in units] == ["train-000000", "train-000001", "val-000000", "test-000000"]
    assert sum(u.images for u in units) == len(frame)


def test_the_fingerprint_follows_the_content_and_nothing_else() -> None:
    shards, files = {"images_001.zip": "a" * 64}, {"Data_Entry_2017_v2020.csv": "b" * 64}
    base = fingerprint(CFG, "official", shards, files)
    assert fingerprint(replace(CFG, upload_workers=1, run_id="other"), "official", shards, files) == base
    changed = [
        fingerprint(replace(CFG, seed=1), "official", shards, files),
        fingerprint(replace(CFG, val_fraction=0.2), "official", shards, files),
        fingerprint(replace(CFG, variant_size=None), "official", shards, files),
        fingerprint(replace(CFG, shard_target_bytes=1 << 20), "official", shards, files),
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
