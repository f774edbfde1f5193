"""A published row survives a Parquet round trip through the release schema exactly, with nulls where the source
has no value, one boolean per finding, and no pixel columns in ``metadata.parquet``."""

from __future__ import annotations

import hashlib
import io
import math
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import nih
from pipeline.convert.schema import FINDING_COLUMNS, PIXEL_COLUMNS, metadata_schema, release_schema, to_record
from tests.reference import IMAGES


def _plan_row(**kw: Any) -> dict[str, Any]:
    """A row as the plan keeps it (``runs/<run>/plan.parquet``)."""
    row: dict[str, Any] = {
        "image_index": "00000013_005.png",
        "patient_id": 13,
        "follow_up": 5,
        "patient_order": 3,
        "age_years": 60.0,
        "sex": "M",
        "view_position": "AP",
        "labels": ["Emphysema", "Infiltration", "Pleural_Thickening", "Pneumothorax"],
        "bboxes": [{"label": "Pneumothorax", "x": 10.5, "y": 20.0, "w": 300.25, "h": 400.0}],
        "original_width": 3056,
        "original_height": 2544,
        "pixel_spacing_x": 0.139,
        "pixel_spacing_y": 0.139,
        "split": "test",
        "shard": "images_001.zip",
        "mode": "L",
        "repaired": None,
    }
    return row | kw


def _round_trip(rows: list[dict[str, Any]], schema: pa.Schema) -> list[dict[str, Any]]:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return list(pq.read_table(io.BytesIO(buf.getvalue())).to_pylist())


def test_a_record_reads_back_from_parquet_exactly_as_it_was_built() -> None:
    png = IMAGES[0].read_bytes()
    record = to_record(_plan_row(), hashlib.sha256(png).hexdigest(), converted=False)
    assert record["image_id"] == "00000013_005"
    assert [c for c in FINDING_COLUMNS if record[c]] == [
        "emphysema",
        "infiltration",
        "pleural_thickening",
        "pneumothorax",
    ]
    assert (record["no_finding"], record["patient_order"]) == (False, 3)
    full = record | {"image": png, "image_small": None}
    (back,) = _round_trip([full], release_schema())
    assert back == full
    assert hashlib.sha256(back["image"]).hexdigest() == back["sha256"]


def test_missing_values_are_nulls_and_no_finding_is_its_own_column() -> None:
    row = _plan_row(
        labels=[nih.NO_FINDING],
        bboxes=[],
        age_years=math.nan,
        original_width=None,
        pixel_spacing_x=math.nan,
        repaired="stripped 40 bytes after IEND",
        mode="RGBA",
    )
    record = to_record(row, "0" * 64, converted=True)
    (back,) = _round_trip([record], metadata_schema())
    assert (back["age_years"], back["original_width"], back["pixel_spacing_x"]) == (None, None, None)
    assert (back["no_finding"], back["bboxes"], back["labels"]) == (True, [], ["No Finding"])
    assert not any(back[c] for c in FINDING_COLUMNS)
    assert (back["original_mode"], back["converted"], back["repaired"]) == (
        "RGBA",
        True,
        "stripped 40 bytes after IEND",
    )
    assert to_record(_plan_row(repaired=""), "0" * 64, converted=False)["repaired"] is None


def test_metadata_parquet_is_the_release_schema_without_pixels() -> None:
    full, meta = release_schema(), metadata_schema()
    assert [f.name for f in full if f.name not in PIXEL_COLUMNS] == meta.names
    assert set(full.names) - set(meta.names) == {"image", "image_small"}
    assert set(to_record(_plan_row(), "0" * 64, converted=False)) == set(meta.names)
    assert meta.field("patient_order").type == pa.int64(), "patient_order == 0 selects each patient's first image"
