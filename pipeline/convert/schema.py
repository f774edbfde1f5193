"""Schema: what one published row of a release is, in Parquet (and in each WebDataset sample's ``.json``).

:func:`release_schema` is the schema of every Parquet file of a release; :func:`metadata_schema` the one of
``metadata.parquet`` (no pixel columns); :func:`to_record` turns a plan row into a published row.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline import nih

BBOX_TYPE = pa.list_(
    pa.struct(
        [("label", pa.string()), ("x", pa.float64()), ("y", pa.float64()), ("w", pa.float64()), ("h", pa.float64())]
    )
)
FINDING_COLUMNS = tuple(nih.finding_column(label) for label in nih.FINDINGS)
PIXEL_COLUMNS = ("image", "image_small")


def release_schema() -> pa.Schema:
    """The schema of every Parquet file of a release (the metadata-only file drops ``image``)."""
    fields = [
        ("image_id", pa.string()),
        ("image_index", pa.string()),
        ("patient_id", pa.int64()),
        ("follow_up", pa.int64()),
        ("age_years", pa.float64()),
        ("sex", pa.string()),
        ("view_position", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("no_finding", pa.bool_()),
        *[(col, pa.bool_()) for col in FINDING_COLUMNS],
        ("bboxes", BBOX_TYPE),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("pixel_spacing_x", pa.float64()),
        ("pixel_spacing_y", pa.float64()),
        ("split", pa.string()),
        ("source_shard", pa.string()),
        ("original_mode", pa.string()),
        ("converted", pa.bool_()),
        ("repaired", pa.string()),
        ("sha256", pa.string()),
        ("image", pa.binary()),
        ("image_small", pa.binary()),
    ]
    return pa.schema(fields)


def metadata_schema() -> pa.Schema:
    """The release schema without pixel columns (``metadata.parquet``)."""
    return pa.schema([f for f in release_schema() if f.name not in PIXEL_COLUMNS])


def _opt_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "" else str(value)


def to_record(row: dict[str, Any], sha256: str, converted: bool) -> dict[str, Any]:
    """Build one published row from a plan row and the sha256 of its published PNG bytes."""
    labels = [str(x) for x in row["labels"]]
    record: dict[str, Any] = {
        "image_id": row["image_index"].removesuffix(".png"),
        "image_index": row["image_index"],
        "patient_id": int(row["patient_id"]),
        "follow_up": int(row["follow_up"]),
        "age_years": _opt_float(row["age_years"]),
        "sex": row["sex"],
        "view_position": row["view_position"],
        "labels": labels,
        "no_finding": nih.NO_FINDING in labels,
        **{col: label in labels for col, label in zip(FINDING_COLUMNS, nih.FINDINGS, strict=True)},
        "bboxes": [dict(b) for b in row["bboxes"]],
        "original_width": _opt_int(row["original_width"]),
        "original_height": _opt_int(row["original_height"]),
        "pixel_spacing_x": _opt_float(row["pixel_spacing_x"]),
        "pixel_spacing_y": _opt_float(row["pixel_spacing_y"]),
        "split": row["split"],
        "source_shard": row["shard"],
        "original_mode": row["mode"],
        "converted": converted,
        "repaired": _opt_str(row.get("repaired")),  # what extraction cut (bytes after IEND), else null
        "sha256": sha256,
    }
    return record
