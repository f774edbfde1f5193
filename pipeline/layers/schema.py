"""What an annotation layer is: its id, kind, files and fields, and the struct column it becomes in a release.

A run names its layers with ``--annotations ID=LOCATION [ID=LOCATION ...]`` (the DAG param ``annotations``):
:func:`parse_annotations`. The same id given twice joins the files into one layer (Google's ``test_labels.csv``
and ``validation_labels.csv``). Every layer is one of four kinds, each with its fields:

* ``label_version``: a Data_Entry file of another label version (``labels`` and the 15 booleans of the primary
  columns, ``atelectasis`` ... ``no_finding``);
* ``expert_labels``: Google's 2019 radiologist-adjudicated labels (``fracture``, ``pneumothorax``,
  ``airspace_opacity``, ``nodule_or_mass``, ``set_id``);
* ``boxes``: a box list (``bboxes``, a list like the primary ``bboxes``); one row per box, many per image;
* ``generic``: a CSV keyed by image file name, its fields declared by a JSON spec (:mod:`pipeline.layers.spec`).

A layer becomes one nullable struct column named by its id (:func:`struct_type`): null where the layer does not
cover the image, a field null where the layer did not read that finding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline import nih
from pipeline.errors import UsageError

__all__ = [
    "BOX_LIST_TYPE",
    "BOX_STRUCT",
    "EXPERT_FIELDS",
    "KINDS",
    "LABEL_VERSION_FIELDS",
    "LAYER_ID_RE",
    "PLAN_COLUMN_PREFIX",
    "Layer",
    "LayerField",
    "LayerFile",
    "check_layer_ids",
    "field_type",
    "image_values",
    "parse_annotations",
    "plan_column",
    "struct_type",
]

#: A layer id: the name of its column in the release. Applied with ``fullmatch``.
LAYER_ID_RE = re.compile(r"[a-z][a-z0-9_]{0,62}", re.ASCII)
KINDS = ("label_version", "expert_labels", "boxes", "generic")
#: A field's type: ``bool`` (nullable), ``string``, ``labels`` (list of strings), ``boxes`` (list of box structs).
FIELD_TYPES = ("bool", "string", "labels", "boxes")
#: The plan table holds a layer's values in ``layer__<id>`` (plan columns and layer ids never collide).
PLAN_COLUMN_PREFIX = "layer__"

BOX_STRUCT = pa.struct(
    [("label", pa.string()), ("x", pa.float64()), ("y", pa.float64()), ("w", pa.float64()), ("h", pa.float64())]
)
BOX_LIST_TYPE = pa.list_(BOX_STRUCT)
_ARROW_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "string": pa.string(),
    "labels": pa.list_(pa.string()),
    "boxes": BOX_LIST_TYPE,
}


@dataclass(frozen=True)
class LayerField:
    """One field of a layer's struct: its name, type (``FIELD_TYPES``) and what it holds."""

    name: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class LayerFile:
    """One file a layer was read from: its name (as messages show it), location, SHA-256 and rows."""

    name: str
    location: str
    sha256: str
    rows: int


LABEL_VERSION_FIELDS: tuple[LayerField, ...] = (
    LayerField("labels", "labels", "the image's labels in this label version, NIH spelling"),
    *(LayerField(nih.finding_column(label), "bool", f"{label} in this label version") for label in nih.FINDINGS),
    LayerField("no_finding", "bool", "No Finding in this label version"),
)
EXPERT_FIELDS: tuple[LayerField, ...] = (
    LayerField("fracture", "bool", "Fracture, adjudicated by radiologists (null: not read)"),
    LayerField("pneumothorax", "bool", "Pneumothorax, adjudicated by radiologists (null: not read)"),
    LayerField("airspace_opacity", "bool", "Airspace opacity, adjudicated by radiologists (null: not read)"),
    LayerField("nodule_or_mass", "bool", "Nodule or mass, adjudicated by radiologists (null: not read)"),
    LayerField("set_id", "string", "the layer's own set (test or val), kept as given; never the release's split"),
)
BOX_FIELDS: tuple[LayerField, ...] = (LayerField("bboxes", "boxes", "the layer's boxes of the image"),)


@dataclass(frozen=True)
class Layer:
    """An annotation layer as a release describes it (JSON-able: :meth:`to_dict`, :meth:`from_dict`)."""

    id: str
    kind: str
    variant: str
    files: tuple[LayerFile, ...]
    fields: tuple[LayerField, ...]
    spec: LayerFile | None = None
    description: str = ""
    citation: str = ""
    licence: str = ""
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def field_names(self) -> list[str]:
        """The struct's field names, in order."""
        return [f.name for f in self.fields]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Layer:
        """Rebuild from :meth:`to_dict` output."""
        spec = data.get("spec")
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            variant=str(data["variant"]),
            files=tuple(LayerFile(**f) for f in data["files"]),
            fields=tuple(LayerField(**f) for f in data["fields"]),
            spec=LayerFile(**spec) if spec else None,
            description=str(data.get("description") or ""),
            citation=str(data.get("citation") or ""),
            licence=str(data.get("licence") or ""),
            notes={str(k): int(v) for k, v in (data.get("notes") or {}).items()},
        )


def plan_column(layer_id: str) -> str:
    """The plan table's column of a layer: ``layer__<id>``."""
    return PLAN_COLUMN_PREFIX + layer_id


def parse_annotations(items: Iterable[str] | None) -> dict[str, tuple[str, ...]]:
    """``["google=test_labels.csv", "google=validation_labels.csv"]`` -> ``{"google": (both locations)}``.

    Raises:
        UsageError: an item is not ``ID=LOCATION``, or its id is not ``[a-z][a-z0-9_]*``.
    """
    layers: dict[str, list[str]] = {}
    for item in items or ():
        layer_id, sep, location = str(item).partition("=")
        layer_id, location = layer_id.strip(), location.strip()
        if not sep or not location:
            raise UsageError(
                f"annotation layer {item!r} is not ID=LOCATION: give it as google=google2019_labels.csv "
                "(a file name in the source, a path or a URI)"
            )
        if not LAYER_ID_RE.fullmatch(layer_id):
            raise UsageError(
                f"annotation layer id {layer_id!r} (in {item!r}) must be a lower-case letter followed by lower-case "
                "letters, digits or '_' (at most 63): it names the layer's column in the release"
            )
        if location in layers.get(layer_id, []):
            raise UsageError(f"annotation layer {layer_id!r} names {location} twice: give each file once")
        layers.setdefault(layer_id, []).append(location)
    return {layer_id: tuple(locations) for layer_id, locations in layers.items()}


def check_layer_ids(ids: Iterable[str], taken: Collection[str]) -> None:
    """Refuse a layer id that is already the name of a column of the release.

    Raises:
        UsageError: naming the id and the columns it may not take.
    """
    clash = sorted(set(ids) & set(taken))
    if clash:
        raise UsageError(
            f"annotation layer id(s) {', '.join(map(repr, clash))} already name(s) a column of the release; choose "
            f"another id (taken: {', '.join(sorted(taken))})"
        )


def field_type(kind: str) -> pa.DataType:
    """The Arrow type of a field type (``FIELD_TYPES``)."""
    return _ARROW_TYPES[kind]


def struct_type(layer: Layer) -> pa.StructType:
    """The struct column a layer becomes: one Arrow field per layer field, in order."""
    return pa.struct([(f.name, field_type(f.type)) for f in layer.fields])


def _plain(value: Any, kind: str) -> Any:
    if kind in ("labels", "boxes"):
        return None if value is None else [dict(v) if kind == "boxes" else str(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value) if kind == "bool" else str(value)


def image_values(layer: Layer, frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each covered image's struct value, from the layer's normalised table (``pipeline.layers.load``).

    A box layer's rows are boxes (``label``, ``x``, ``y``, ``w``, ``h``): one list per image, in file order.
    Any other layer has one row per image with a column per field.
    """
    if layer.kind == "boxes":
        boxes: dict[str, list[dict[str, Any]]] = {}
        cells = [frame[c].tolist() for c in ("image_index", "label", "x", "y", "w", "h")]
        for name, label, x, y, w, h in zip(*cells, strict=True):
            box = {"label": str(label), "x": float(x), "y": float(y), "w": float(w), "h": float(h)}
            boxes.setdefault(str(name), []).append(box)
        return {name: {"bboxes": items} for name, items in boxes.items()}
    names = frame["image_index"].astype("str").tolist()
    columns = {f.name: frame[f.name].tolist() for f in layer.fields}
    return {name: {f.name: _plain(columns[f.name][i], f.type) for f in layer.fields} for i, name in enumerate(names)}
