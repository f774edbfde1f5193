"""One WebDataset sample as a consumer reads it: the PNG as published, its metadata without pixels, the label
vector in the documented order, and the variant when there is one; what goes through XCom stays small; rows go
in image id order (the row-group index depends on it)."""

from __future__ import annotations

import io
import json
import tarfile
from typing import cast

import numpy as np
import pyarrow as pa
import pytest

from pipeline import nih
from pipeline.config import RunConfig, StoreConfig
from pipeline.convert.pool import Sample
from pipeline.convert.schema import to_record
from pipeline.convert.tarstream import TarStream
from pipeline.convert.units import ParquetParts, _by_image_id, _summary, write_sample
from pipeline.errors import PipelineError
from pipeline.store.storage import Store
from tests.reference import IMAGES
from tests.unit.convert.test_schema import _plan_row


def _members(*samples: Sample) -> dict[str, bytes]:
    out = io.BytesIO()
    tar = TarStream(out)  # type: ignore[arg-type]
    for sample in samples:
        write_sample(tar, sample)
    tar.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


def test_a_sample_is_its_png_metadata_and_label_vector() -> None:
    png = IMAGES[0].read_bytes()
    record = to_record(_plan_row(), "f" * 64, converted=False)
    members = _members(
        Sample(record, png), Sample(to_record(_plan_row(image_index="00000014_000.png"), "e" * 64, False), b"x", b"s")
    )
    assert sorted(members) == [
        "00000013_005.json",
        "00000013_005.labels.npy",
        "00000013_005.png",
        "00000014_000.json",
        "00000014_000.labels.npy",
        "00000014_000.png",
        "00000014_000.small.png",
    ]
    assert members["00000013_005.png"] == png
    assert json.loads(members["00000013_005.json"]) == record
    vector = np.load(io.BytesIO(members["00000013_005.labels.npy"]), allow_pickle=False)
    names = [label for label, on in zip([*nih.FINDINGS, nih.NO_FINDING], vector, strict=True) if on]
    assert names == ["Emphysema", "Infiltration", "Pleural_Thickening", "Pneumothorax"]
    assert (vector.dtype, members["00000014_000.small.png"]) == (np.uint8, b"s")


def test_the_unit_summary_counts_the_quarantine_and_drops_per_image_parts() -> None:
    result = {"unit": "train-000000", "images": 2, "files": [], "digests": [{}, {}], "quarantine": [{"x": "y"}]}
    assert _summary(result) == {"unit": "train-000000", "images": 2, "files": [], "quarantined": 1}


def test_a_units_rows_go_in_image_id_order_even_where_image_index_order_differs() -> None:
    table = pa.table({"image_index": ["b.png", "a-1.png", "a.png"], "n": [0, 1, 2]})
    assert _by_image_id(table)["image_index"].to_pylist() == ["a.png", "a-1.png", "b.png"]  # "a-1.png" < "a.png"


def test_parquet_parts_refuse_rows_out_of_image_id_order() -> None:
    cfg = RunConfig(source="/nowhere", store=StoreConfig("s3://bucket/p"), run_id="r")
    parts = ParquetParts(cast(Store, None), "releases/v/parquet/split=train", "train-000000", cfg)
    second = to_record(_plan_row(image_index="00000014_000.png"), "e" * 64, False)
    parts.add(Sample(second, b"png", b"sm"))  # held in the row group being filled: nothing written yet
    with pytest.raises(PipelineError, match="00000013_005 comes after 00000014_000"):
        parts.add(Sample(to_record(_plan_row(), "f" * 64, False), b"png"))
    assert parts.image_bytes == {"full": 3, "small": 2}
