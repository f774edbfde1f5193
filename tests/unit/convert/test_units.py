"""One WebDataset sample as a consumer reads it: the PNG as published, its metadata without pixels, the label
vector in the documented order, and the variant when there is one; what goes through XCom stays small."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np

from pipeline import nih
from pipeline.convert.pool import Sample
from pipeline.convert.schema import to_record
from pipeline.convert.tarstream import TarStream
from pipeline.convert.units import _summary, write_sample
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
