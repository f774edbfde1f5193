"""What changed in one annotation layer between two releases (``cxr releases diff``).

Both releases are read as Arrow tables with ``image_index`` and the layer's struct column (named by the layer id;
null where the layer does not cover the image). An image is *added* to the layer when the new release covers it and
the old one does not, *removed* in the opposite case (also when the image left the release), and *changed* when
both cover it with different values. A layer absent from one table covers nothing there. Label lists and box lists
are compared as sets: a different order in the file is not a change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from pipeline import nih

__all__ = ["TEXT_LIMIT", "LayerChange", "ValueChange", "layer_changes", "value_text"]

#: A before/after text longer than this is cut (with ``…``): the full values are in the releases.
TEXT_LIMIT = 160
_LABEL_OF_COLUMN = {nih.finding_column(label): label for label in nih.LABELS}


@dataclass(frozen=True)
class ValueChange:
    """One image the layer covers in both releases with different values: the fields that differ, as short text."""

    image_index: str
    before: str
    after: str


@dataclass(frozen=True)
class LayerChange:
    """The changes of layer ``layer_id`` from the old release to the new (``in_old``/``in_new``: it exists there)."""

    layer_id: str
    in_old: bool
    in_new: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[ValueChange] = field(default_factory=list)
    unchanged: int = 0

    def counts(self) -> dict[str, int]:
        """Number of images in each category."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "unchanged": self.unchanged,
        }

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        """JSON-able form; ``limit`` caps each list (counts stay exact)."""

        def cap(items: list[Any]) -> list[Any]:
            return items if limit is None else items[:limit]

        return {
            "in_old": self.in_old,
            "in_new": self.in_new,
            "counts": self.counts(),
            "added": cap(self.added),
            "removed": cap(self.removed),
            "changed": [asdict(c) for c in cap(self.changed)],
        }


def _values(table: pa.Table, layer_id: str) -> dict[str, dict[str, Any]]:
    """image_index -> the layer's value, for the images it covers in this table."""
    if layer_id not in table.column_names:
        return {}
    names = table.column("image_index").to_pylist()
    values = table.column(layer_id).to_pylist()
    return {str(n): v for n, v in zip(names, values, strict=True) if isinstance(v, dict)}


def _normal(value: Any) -> Any:
    """A value in a form where equal content compares equal (lists in a fixed order)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted((_normal(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return value


def _box_text(box: dict[str, Any]) -> str:
    coords = ",".join("null" if box.get(k) is None else f"{box[k]:g}" for k in ("x", "y", "w", "h"))
    return f"{box.get('label')}@{coords}"


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return " ".join(sorted(_box_text(box) for box in value))
        return "|".join(sorted(map(str, value))) or "[]"
    return str(value)


def _implied(name: str, value: dict[str, Any]) -> bool:
    """True when a bool field of a label version says no more than the value's ``labels`` do."""
    label = _LABEL_OF_COLUMN.get(name)
    labels = value.get("labels")
    return label is not None and labels is not None and value.get(name) == (label in labels)


def _differing(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The fields whose values differ; booleans the changed ``labels`` already imply are left out."""
    names = [*before, *(k for k in after if k not in before)]
    names = [n for n in names if _normal(before.get(n)) != _normal(after.get(n))]
    if "labels" in names:
        names = [n for n in names if n == "labels" or not (_implied(n, before) and _implied(n, after))]
    return names


def _short(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def value_text(value: dict[str, Any], names: list[str]) -> str:
    """``name=value`` for each of ``names`` (``labels`` as ``A|B``, boxes as ``label@x,y,w,h``), cut to TEXT_LIMIT."""
    return _short("; ".join(f"{name}={_cell(value.get(name))}" for name in names))


def layer_changes(old: pa.Table, new: pa.Table, layer_id: str) -> LayerChange:
    """Compare layer ``layer_id`` between two metadata tables (columns ``image_index`` and the layer's struct)."""
    before, after = _values(old, layer_id), _values(new, layer_id)
    changed = []
    for name in sorted(before.keys() & after.keys()):
        names = _differing(before[name], after[name])
        if names:
            changed.append(ValueChange(name, value_text(before[name], names), value_text(after[name], names)))
    return LayerChange(
        layer_id=layer_id,
        in_old=layer_id in old.column_names,
        in_new=layer_id in new.column_names,
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=changed,
        unchanged=len(before.keys() & after.keys()) - len(changed),
    )
