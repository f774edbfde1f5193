"""A layer as a release publishes it: its own table ``annotations/<id>.parquet`` and its entry in the manifest.

The table holds the layer as normalised, only for the images the release publishes: ``image_index``,
``image_id``, one column per field (a box layer: one row per box, ``label``, ``x``, ``y``, ``w``, ``h``), then
``source_file`` and ``line`` (where each row came from). Its Parquet metadata holds the layer's provenance under
``cxr.layer`` (kind, variant, each file's name, SHA-256 and rows, the spec, description, citation, licence), and the
manifest lists the same, with the images covered, the table's path and the struct column's type.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline.layers.schema import Layer, field_type, struct_type

__all__ = ["LAYER_METADATA_KEY", "layer_table", "manifest_entry", "table_path", "table_schema"]

#: The Parquet key-value metadata key of a layer table's provenance.
LAYER_METADATA_KEY = b"cxr.layer"
_BOX_COLUMNS = (("label", pa.string()), ("x", pa.float64()), ("y", pa.float64()), ("w", pa.float64()),
                ("h", pa.float64()))  # fmt: skip


def table_path(layer_id: str) -> str:
    """``annotations/<id>.parquet``, relative to the release."""
    return f"annotations/{layer_id}.parquet"


def table_schema(layer: Layer) -> pa.Schema:
    """The schema of a layer's table, with its provenance in the metadata."""
    fields = list(_BOX_COLUMNS) if layer.kind == "boxes" else [(f.name, field_type(f.type)) for f in layer.fields]
    columns = [("image_index", pa.string()), ("image_id", pa.string()), *fields]
    columns += [("source_file", pa.string()), ("line", pa.int64())]
    provenance = json.dumps(layer.to_dict(), sort_keys=True).encode()
    return pa.schema(columns, metadata={LAYER_METADATA_KEY: provenance})


def _column(values: pd.Series, kind: pa.DataType) -> list[Any]:
    out: list[Any] = []
    for value in values.tolist():
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            out.append(None)
        elif pa.types.is_list(kind):
            out.append([str(v) for v in (value.tolist() if hasattr(value, "tolist") else value)])
        elif pa.types.is_boolean(kind):
            out.append(bool(value))
        elif pa.types.is_floating(kind):
            out.append(float(value))
        elif pa.types.is_integer(kind):
            out.append(int(value))
        else:
            out.append(str(value))
    return out


def layer_table(layer: Layer, table: pd.DataFrame, published: set[str]) -> pa.Table:
    """The layer's rows of published images, sorted by image (then file and line), as its release table."""
    rows = table[table["image_index"].astype("str").isin(published)]
    rows = rows.sort_values(["image_index", "source_file", "line"], kind="stable", ignore_index=True)
    rows = rows.assign(image_id=rows["image_index"].astype("str").str.removesuffix(".png"))
    schema = table_schema(layer)
    data = {f.name: _column(rows[f.name], f.type) if len(rows) else [] for f in schema}
    return pa.Table.from_pydict(data, schema=schema)


def manifest_entry(layer: Layer, published: pa.Table, comparison: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest's entry for a layer: the layer itself, its table, the images it covers, its struct's type."""
    covered = len(set(published.column("image_index").to_pylist()))
    return {
        **layer.to_dict(),
        "table": table_path(layer.id),
        "rows": published.num_rows,
        "images_covered": covered,
        "schema": str(struct_type(layer)),
        "comparison": comparison,
    }
