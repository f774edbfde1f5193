"""Shards that feed every worker, and the index a reader finds an image by, on a release published through every
stage into the real store: every split is cut into at least ``min_shards`` (default 8) WebDataset shards and
Parquet parts, or one per image; each Parquet file's manifest entry lists its row groups as its footer does; the
manifest gives the bytes of the full and small images per split; ``patient_order`` numbers each patient's
published images 0, 1, ... by follow-up, also when conversion quarantined one of them."""

from __future__ import annotations

import io
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import nih
from pipeline.convert.schema import FINDING_COLUMNS
from pipeline.dev.stack import StackInfo
from pipeline.plan.split import SPLITS
from pipeline.publish.manifest import read_manifest
from pipeline.store.storage import Store
from tests.integration.convert.test_undecodable_images import _gray8_members, _replace_members, broken_variants
from tests.integration.releases import make_source, new_store, publish

pytestmark = pytest.mark.integration
MIN_SHARDS = 8  # the default of the min_shards option


@dataclass(frozen=True)
class Published:
    store: Store
    manifest: dict[str, Any]
    broken: str  # the image conversion quarantined: the first of its patient's
    patient: int

    def table(self, rel: str) -> pd.DataFrame:
        return pq.read_table(io.BytesIO(self.store.get_bytes(f"releases/s1/{rel}"))).to_pandas()

    def files(self, kind: str, split: str) -> list[dict[str, Any]]:
        folder = f"parquet/split={split}/" if kind == "parquet" else f"webdataset/{split}/"
        return [f for f in self.manifest["files"] if f["path"].startswith(folder) and f["kind"] == kind]

    def images(self, split: str) -> pd.DataFrame:
        """The split's published rows as its Parquet files hold them, pixels included."""
        return pd.concat([self.table(f["path"]) for f in self.files("parquet", split)], ignore_index=True)

    @property
    def broken_split(self) -> str:
        meta = self.table("metadata.parquet")
        return str(meta.loc[meta["patient_id"] == self.patient, "split"].iloc[0])


def _break_a_first_image(src: Path) -> tuple[str, int]:
    """Make the first image (by follow-up) of a patient with several 8-bit gray images undecodable: its name and
    its patient."""
    entry = pd.read_csv(src / "Data_Entry_2017.csv")
    gray8 = _gray8_members(src)
    entry = entry[entry["Image Index"].isin(gray8)]
    patient = int(entry["Patient ID"].value_counts().index[0])
    first = entry[entry["Patient ID"] == patient].sort_values(["Follow-up #", "Image Index"])["Image Index"].iloc[0]
    archive, member, data = gray8[first]
    _replace_members(archive, {member: broken_variants(data)["broken data stream"][0]})
    return str(first), patient


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo) -> Published:
    src = make_source(tmp_path_factory.mktemp("shards") / "mirror", images=60, seed=7)
    broken, patient = _break_a_first_image(src)
    store = new_store(s3_stack, "shards")
    # small row groups and Parquet files (images are ~3 kB): several row groups a file, several files a unit
    summary = publish(store, src, "shards-1", release="s1", row_group_bytes=4_000, parquet_file_bytes=10_000)
    assert summary["published"]
    manifest = read_manifest(store, "s1")
    assert manifest is not None
    published = Published(store, manifest, broken, patient)
    quarantine = published.table("quarantine.parquet")
    assert broken in set(quarantine.loc[quarantine["reason_code"] == "undecodable_image", "image_index"])
    return published


def test_every_split_has_min_shards_shards_numbered_without_gaps_or_one_per_image(release: Published) -> None:
    assert release.manifest["config"]["min_shards"] == MIN_SHARDS
    for split in SPLITS:
        planned = release.manifest["counts"][split] + (split == release.broken_split)
        tars = sorted(release.files("wds", split), key=lambda f: f["path"])
        assert len(tars) == min(MIN_SHARDS, planned), f"{split}: {len(tars)} shards for {planned} images"
        assert [f["path"] for f in tars] == [f"webdataset/{split}/{split}-{i:06d}.tar" for i in range(len(tars))]
        assert sum(f["samples"] for f in tars) == release.manifest["counts"][split]
        parts = defaultdict(list)
        for f in release.files("parquet", split):
            parts[re.sub(r"-\d\d\.parquet$", "", f["path"].rsplit("/", 1)[1])].append(f)
        for tar in tars:  # the same images in the shard and its Parquet part, a row group or more
            stem = tar["path"].rsplit("/", 1)[1].removesuffix(".tar")
            assert sum(f["rows"] for f in parts.get(stem, [])) == tar["samples"], stem
            assert sum(len(f["row_groups"]) for f in parts.get(stem, [])) >= (tar["samples"] > 0), stem
        assert set(parts) <= {t["path"].rsplit("/", 1)[1].removesuffix(".tar") for t in tars}


def _footer(body: bytes) -> list[dict[str, Any]]:
    """Each row group of a Parquet file as its footer has it: rows, and the min and max of ``image_id``."""
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    column = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == "image_id")
    groups = (meta.row_group(i) for i in range(meta.num_row_groups))
    return [
        {"rows": g.num_rows, "first": g.column(column).statistics.min, "last": g.column(column).statistics.max}
        for g in groups
    ]


def test_each_parquet_files_row_groups_are_listed_as_its_footer_has_them(release: Published) -> None:
    files = [f for f in release.manifest["files"] if f["path"].startswith("parquet/")]
    assert any(len(f["row_groups"]) > 1 for f in files), "the test wants files of several row groups"
    assert any(f["path"].endswith("-01.parquet") for f in files), "and units of several files"
    for f in files:
        body = release.store.get_bytes(f"releases/s1/{f['path']}")
        assert f["row_groups"] == _footer(body), f["path"]
        ids = pq.read_table(io.BytesIO(body), columns=["image_id"])["image_id"].to_pylist()
        assert ids == sorted(ids), f"{f['path']}: rows not in image_id order"
        assert sum(g["rows"] for g in f["row_groups"]) == f["rows"] == len(ids)


def test_the_row_group_index_finds_an_image_by_reading_one_row_group(release: Published) -> None:
    meta = release.table("metadata.parquet")
    wanted = meta.iloc[len(meta) // 2]
    files = [f for f in release.manifest["files"] if f["path"].startswith("parquet/")]
    (where,) = [
        (f, k) for f in files for k, g in enumerate(f["row_groups"]) if g["first"] <= wanted.image_id <= g["last"]
    ]
    body = release.store.get_bytes(f"releases/s1/{where[0]['path']}")
    group = pq.ParquetFile(io.BytesIO(body)).read_row_group(where[1]).to_pandas()
    (row,) = group[group["image_id"] == wanted.image_id].itertuples()
    assert row.sha256 == wanted.sha256
    assert row.split == wanted.split


def test_the_manifest_gives_the_bytes_of_the_full_and_small_images_of_each_split(release: Published) -> None:
    sizes = release.manifest["image_bytes"]
    assert set(sizes) == set(SPLITS)
    for split in SPLITS:
        rows = release.images(split)
        small = int(rows["image_small"].map(lambda b: 0 if b is None else len(b)).sum())
        assert sizes[split] == {"full": int(rows["image"].map(len).sum()), "small": small}, split
    assert all(sizes[s]["full"] > 0 and sizes[s]["small"] > 0 for s in SPLITS)


def test_the_manifest_names_the_label_columns_in_label_vector_order(release: Published) -> None:
    columns = release.manifest["label_columns"]
    assert columns == [*FINDING_COLUMNS, "no_finding"]
    assert columns == [nih.finding_column(label) for label in release.manifest["label_vector_order"]]
    assert "pleural_thickening" in columns
    assert set(columns) <= set(release.table("metadata.parquet").columns)


def test_patient_order_numbers_each_patients_published_images_by_follow_up(release: Published) -> None:
    meta = release.table("metadata.parquet")
    for patient, rows in meta.groupby("patient_id"):
        ordered = rows.sort_values(["follow_up", "image_index"])
        assert ordered["patient_order"].tolist() == list(range(len(rows))), patient
    firsts = meta[meta["patient_order"] == 0]
    assert len(firsts) == meta["patient_id"].nunique() == firsts["patient_id"].nunique(), "one first image each"
    assert str(meta["patient_order"].dtype) == "int64"
    assert release.broken not in set(meta["image_index"])
    # the images of the patient whose first image was quarantined at conversion keep the plan's order (1, 2, ...)
    # in their Parquet rows; every other image has the same order there as in metadata.parquet
    images = pd.concat([release.images(s) for s in SPLITS], ignore_index=True)
    both = images[["image_id", "patient_id", "patient_order"]].merge(meta[["image_id", "patient_order"]], on="image_id")
    assert len(both) == len(meta)
    moved = both[both["patient_order_x"] != both["patient_order_y"]]
    assert set(moved["patient_id"]) == {release.patient}
    assert (moved["patient_order_x"] - moved["patient_order_y"]).eq(1).all()
