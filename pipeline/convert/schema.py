"""Schema: what one published row of a release is, in Parquet (and in each WebDataset sample's ``.json``).

:func:`release_schema` is the schema of every Parquet file of a release; :func:`metadata_schema` the one of
``metadata.parquet`` (no pixel columns); :func:`to_record` turns a plan row into a published row. A release with
annotation layers has one more column per layer, a nullable struct named by the layer id, after ``sha256``
(:mod:`pipeline.layers.schema`).

``patient_order`` is an image's place among its patient's images in the release (0 for the first by
``follow_up``, then ``image_index``): ``patient_order == 0`` is "one image per patient, the first". The plan
computes it (:func:`pipeline.plan.planning.patient_order`); ``metadata.parquet`` has it over the images published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline import nih
from pipeline.layers.schema import BOX_LIST_TYPE, Layer, plan_column, struct_type

BBOX_TYPE = BOX_LIST_TYPE
FINDING_COLUMNS = tuple(nih.finding_column(label) for label in nih.FINDINGS)
PIXEL_COLUMNS = ("image", "image_small")


def release_schema(layers: Sequence[Layer] = ()) -> pa.Schema:
    """The schema of every Parquet file of a release (the metadata-only file drops ``image``); each annotation layer
    adds its struct column after ``sha256``."""
    fields = [
        ("image_id", pa.string()),
        ("image_index", pa.string()),
        ("patient_id", pa.int64()),
        ("follow_up", pa.int64()),
        ("patient_order", pa.int64()),
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
        *[(layer.id, struct_type(layer)) for layer in layers],
        ("image", pa.binary()),
        ("image_small", pa.binary()),
    ]
    return pa.schema(fields)


def metadata_schema(layers: Sequence[Layer] = ()) -> pa.Schema:
    """The release schema without pixel columns (``metadata.parquet``)."""
    return pa.schema([f for f in release_schema(layers) if f.name not in PIXEL_COLUMNS])


def column_names() -> tuple[str, ...]:
    """The release's own column names (an annotation layer may not take one)."""
    return tuple(release_schema().names)


def _opt_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "" else str(value)


def to_record(row: dict[str, Any], sha256: str, converted: bool, layers: Sequence[Layer] = ()) -> dict[str, Any]:
    """Build one published row from a plan row and the sha256 of its published PNG bytes (and its layers' values:
    the plan's ``layer__<id>`` columns, null where a layer does not cover the image)."""
    labels = [str(x) for x in row["labels"]]
    record: dict[str, Any] = {
        "image_id": row["image_index"].removesuffix(".png"),
        "image_index": row["image_index"],
        "patient_id": int(row["patient_id"]),
        "follow_up": int(row["follow_up"]),
        "patient_order": int(row["patient_order"]),
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
    for layer in layers:
        record[layer.id] = _layer_value(row.get(plan_column(layer.id)))
    return record


def _layer_value(value: Any) -> dict[str, Any] | None:
    """A layer's struct value as read back from the plan table (Arrow gives lists as lists, structs as dicts)."""
    if value is None or not isinstance(value, dict):
        return None
    return {k: v.tolist() if hasattr(v, "tolist") else list(v) if isinstance(v, tuple) else v for k, v in value.items()}
