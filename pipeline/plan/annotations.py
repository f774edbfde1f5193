"""Annotation layers in the plan: each layer row joins its image, or is quarantined, or counted as not in the source.

A layer never decides what a release holds: the primary labels and the split lists do. Each row a layer kept at
curation (``runs/<run>/layers/<id>.parquet``) ends up in exactly one place, as a box of the box list does:

* joined to its image when that image is published: the plan table gets the layer's column ``layer__<id>``
  (:func:`pipeline.layers.schema.plan_column`), the image's struct value, null for an image the layer does not
  cover. Splits are never touched: a layer's own sets (Google's ``Set Id``) stay a field;
* quarantined (``layer_row_without_row``: the image has no Data_Entry row, whether or not an archive holds it: a
  layer names images of the dataset, and Data_Entry lists them all; ``layer_row_image_quarantined``: the image is
  quarantined for its own reason), with the layer file, line and reason;
* counted as not in this source (``layer_rows``), when Data_Entry lists the image but no archive of the source holds
  it (a subset, as a partial download is).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from pipeline.layers.curation import LAYERS_DOCUMENT, layer_table_name
from pipeline.layers.schema import Layer, image_values, plan_column
from pipeline.plan.crosscheck import QUARANTINE_COLUMNS, QUARANTINE_REASONS, SUBSET_REASONS
from pipeline.store.storage import Store
from pipeline.store.tables import get_frame, get_json

__all__ = ["LayerJoin", "join_layers", "load_layers", "quarantine_rows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerJoin:
    """The plan table with its layer columns, and the layer rows quarantined or not in this source."""

    frame: pd.DataFrame
    layers: tuple[Layer, ...] = ()
    quarantine: list[pd.DataFrame] = field(default_factory=list)
    subset: list[pd.DataFrame] = field(default_factory=list)


def load_layers(store: Store, prefix: str) -> list[tuple[Layer, pd.DataFrame]]:
    """The run's layers and their checked rows, as curation kept them (none when the run names no layer)."""
    key = f"{prefix}/{LAYERS_DOCUMENT}"
    if not store.exists(key):
        return []
    layers = [Layer.from_dict(item) for item in get_json(store, key)]
    return [(layer, get_frame(store, f"{prefix}/{layer_table_name(layer.id)}")) for layer in layers]


def quarantine_rows(layer: Layer, rows: pd.DataFrame, code: str, detail: str = "") -> pd.DataFrame:
    """Quarantine (or subset) rows for some of a layer's rows: file, line, image and the reason's wording."""
    wording = {**QUARANTINE_REASONS, **SUBSET_REASONS}[code]
    out = pd.DataFrame(
        {
            "source": rows["source_file"].astype("str"),
            "member": "line " + rows["line"].astype("int64").astype("str"),
            "image_index": rows["image_index"].astype("str"),
            "reason": f"{wording} (layer {layer.id}{detail})",
            "reason_code": code,
        },
        index=rows.index,
    )
    return out[list(QUARANTINE_COLUMNS)].astype("str")


def _sort(layer: Layer, table: pd.DataFrame, known: set[str], present: set[str], published: set[str]) -> LayerJoin:
    names = table["image_index"].astype("str")
    unknown = table[~names.isin(known)]
    absent = table[names.isin(known) & ~names.isin(present)]
    held = table[names.isin(known) & names.isin(present) & ~names.isin(published)]
    kept = table[names.isin(published)]
    quarantine = [
        quarantine_rows(layer, unknown, "layer_row_without_row"),
        quarantine_rows(layer, held, "layer_row_image_quarantined"),
    ]
    subset = [quarantine_rows(layer, absent, "layer_rows")]
    return LayerJoin(kept, (layer,), quarantine, subset)


def join_layers(
    frame: pd.DataFrame, layers: list[tuple[Layer, pd.DataFrame]], known: set[str], present: set[str]
) -> LayerJoin:
    """Add each layer's column to the plan table; sort out the rows whose image is not published.

    Args:
        frame: The publishable plan rows (``image_index`` ...).
        layers: The run's layers and checked rows (:func:`load_layers`).
        known: Image names of the Data_Entry file.
        present: Image names in the source's archives (landed or quarantined).
    """
    published = set(frame["image_index"].astype("str"))
    quarantine: list[pd.DataFrame] = []
    subset: list[pd.DataFrame] = []
    for layer, table in layers:
        sorted_out = _sort(layer, table, known, present, published)
        values = image_values(layer, sorted_out.frame)
        column = [values.get(str(name)) for name in frame["image_index"]]
        frame = frame.assign(**{plan_column(layer.id): pd.Series(column, index=frame.index, dtype=object)})
        quarantine += sorted_out.quarantine
        subset += sorted_out.subset
        log.info(
            "layer %s covers %d of %d publishable images (%d rows quarantined, %d not in this source)",
            layer.id,
            len(values),
            len(frame),
            sum(len(q) for q in sorted_out.quarantine),
            sum(len(s) for s in sorted_out.subset),
        )
    return LayerJoin(frame, tuple(layer for layer, _ in layers), quarantine, subset)
