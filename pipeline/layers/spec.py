"""The JSON spec of a generic annotation layer: which CSV column names the image, which are labels, what they mean.

A generic layer is any CSV keyed by image file name, with a spec beside it: ``<file>.layer.json`` or, for
``relabels.csv``, ``relabels.layer.json`` (:func:`spec_names`). A spec beside a file always wins over recognising
its header. The spec is one JSON object::

    {"id_column": "Image",
     "labels": {"Pneumonia": {"type": "boolean", "true": ["1", "yes"], "false": ["0", "no"], "field": "pneumonia"},
                "Quality": {"type": "string", "values": ["good", "poor"]},
                "Reader": {"type": "string", "map": {"A": "reader_a", "B": "reader_b"}},
                "Comment": {"type": "string"}},
     "null": [""],
     "description": "...", "citation": "...", "licence": "..."}

Each label column becomes one field of the layer (``field``; by default the column name lower-cased, each run of
other characters than letters and digits one ``_``). A ``boolean`` label's cells match its ``true`` and ``false``
values case-insensitively after stripping; a ``string`` label keeps the stripped cell when it is one of ``values``
(exactly), maps it by ``map``, or keeps any text when it declares neither. Cells in ``null`` (the spec's, or the
label's own; ``[""]`` by default; case-insensitive) mean "not read": null. Any other cell is a vocabulary problem
of its row (quarantined by :mod:`pipeline.layers.checks`). ``license`` is read as ``licence``.

Every rule broken is a :class:`~pipeline.errors.LayerSpecError` naming the spec file, the key and the fix:
:func:`parse_spec` for the spec alone, :func:`check_columns` for the spec against a CSV's header.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.curate.reading import brief, short
from pipeline.errors import LayerSpecError
from pipeline.ingest.sources import spec_names as _source_spec_names
from pipeline.layers.schema import LAYER_ID_RE, LayerField

__all__ = ["FIELD_NAME_RE", "RESERVED_FIELDS", "LabelSpec", "LayerSpec", "check_columns", "parse_spec", "spec_names"]

#: A field name: applied with ``fullmatch`` (the layer ids' rule: it names a struct field in the release).
FIELD_NAME_RE = LAYER_ID_RE
#: Columns every layer table has beside its fields: no field may take their names.
RESERVED_FIELDS = ("image_index", "source_file", "line")
_TOP_KEYS = ("id_column", "labels", "null", "description", "citation", "licence", "license")
_LABEL_KEYS = ("type", "true", "false", "values", "map", "field", "null", "description")
#: Spelling in the spec -> the field type (``pipeline.layers.schema.FIELD_TYPES``).
_TYPES = {"boolean": "bool", "bool": "bool", "string": "string"}
_NOT_NAME = re.compile(r"[^a-z0-9]+")


def spec_names(file_name: str) -> tuple[str, ...]:
    """The spec names looked for beside a layer file: ``relabels.csv`` -> ``relabels.csv.layer.json``,
    ``relabels.layer.json``."""
    return _source_spec_names(file_name)


def _fold(cell: str) -> str:
    return cell.strip().casefold()


@dataclass(frozen=True)
class LabelSpec:
    """One label column of a generic layer: the field it becomes and how its cells are read."""

    column: str
    field: str
    type: str  # "bool" or "string"
    true: tuple[str, ...] = ()
    false: tuple[str, ...] = ()
    values: tuple[str, ...] | None = None
    mapping: Mapping[str, str] | None = None
    null: tuple[str, ...] = ("",)
    description: str = ""

    def _allowed(self) -> str:
        """What a cell may be, short (a quarantine reason shows it): empty cells are not mentioned."""
        nulls = [n for n in self.null if n]
        tail = f", null {brief(nulls)}" if nulls else ""
        if self.type == "bool":
            return f"one of true {brief(list(self.true))}, false {brief(list(self.false))}{tail}"
        if self.values is not None:
            return f"one of {brief(list(self.values))}{tail}"
        return f"a key of the map {brief(list(self.mapping or {}))}{tail}"

    def _known(self) -> dict[str, Any] | None:
        """Cell (folded for a boolean) -> value; None for free text."""
        if self.type == "bool":
            return {**{_fold(f): False for f in self.false}, **{_fold(t): True for t in self.true}}
        if self.values is not None:
            return {v: v for v in self.values}
        return dict(self.mapping) if self.mapping is not None else None

    def read(self, cells: pd.Series) -> tuple[pd.Series, pd.Series]:
        """The column's values (``boolean`` or object str/None) and each row's problem (None when readable)."""
        known, nulls = self._known(), {_fold(n) for n in self.null}

        def value(cell: str) -> tuple[Any, str | None]:
            if _fold(cell) in nulls:
                return None, None
            if known is None:
                return cell, None
            key = _fold(cell) if self.type == "bool" else cell
            if key in known:
                return known[key], None
            return None, f"{self.column} {short(cell)!r} is not {self._allowed()}"

        codes, uniques = pd.factorize(cells.fillna("").astype("str").str.strip())
        read = [value(str(u)) for u in uniques]
        values = [read[c][0] for c in codes]
        problems = pd.Series([read[c][1] for c in codes], index=cells.index, dtype="object")
        dtype = "boolean" if self.type == "bool" else "object"
        return pd.Series(values, index=cells.index, dtype=dtype), problems


@dataclass(frozen=True)
class LayerSpec:
    """A generic layer's spec, checked: the id column, the label columns in spec order, the texts for the card."""

    source: str
    id_column: str
    labels: tuple[LabelSpec, ...]
    description: str = ""
    citation: str = ""
    licence: str = ""
    null: tuple[str, ...] = ("",)

    @property
    def fields(self) -> tuple[LayerField, ...]:
        """The layer's fields, one per label column."""
        return tuple(
            LayerField(label.field, label.type, label.description or f"{label.column} (column of the layer file)")
            for label in self.labels
        )


def _fail(source: str, key: str, problem: str, fix: str) -> LayerSpecError:
    return LayerSpecError(f"{source}: {key}: {problem}; {fix}")


def _check_keys(source: str, where: str, data: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _fail(source, f"{where}{key}", "unknown key", f"{hint}the keys known here are {', '.join(known)}")


def _text(source: str, key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(source, key, f"must be text, not {type(value).__name__}", f'write it as "{key}": "..."')
    return value.strip()


def _cells(source: str, key: str, value: Any, *, empty_ok: bool = True) -> tuple[str, ...]:
    """A list of cell texts (strings or integers, as a CSV cell would spell them)."""
    items = [value] if isinstance(value, str) else value
    ok = isinstance(items, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in items)
    if not ok:
        raise _fail(source, key, f"{short(json.dumps(value))} is not a list of cell texts", 'write it as ["1", "yes"]')
    cells = tuple(str(v).strip() for v in items)
    if not cells and not empty_ok:
        raise _fail(source, key, "is empty", 'list at least one cell text, e.g. ["1", "yes"]')
    return cells


def _overlap(source: str, key: str, a: tuple[str, ...], b: tuple[str, ...], what: str) -> None:
    common = sorted({_fold(x) for x in a} & {_fold(x) for x in b})
    if common:
        raise _fail(source, key, f"{brief(common)} appear(s) in both {what}", "each cell text may mean one thing only")


def _field_name(source: str, column: str, value: Any) -> str:
    key = f"labels.{column}.field"
    if value is None:
        name = _NOT_NAME.sub("_", column.lower()).strip("_")
        if not FIELD_NAME_RE.fullmatch(name):
            fix = 'give the label a "field": a lower-case letter, then lower-case letters, digits or "_"'
            raise _fail(source, f"labels.{column}", f"the column name makes no valid field name ({name!r})", fix)
        return name
    name = _text(source, key, value)
    if not FIELD_NAME_RE.fullmatch(name):
        raise _fail(source, key, f"{short(name)!r} is not a valid field name",
                    'use a lower-case letter, then lower-case letters, digits or "_" (at most 63)')  # fmt: skip
    return name


def _string_label(source: str, column: str, spec: Mapping[str, Any], null: tuple[str, ...]) -> dict[str, Any]:
    where = f"labels.{column}"
    if "true" in spec or "false" in spec:
        raise _fail(source, where, 'a "string" label has no "true"/"false"', 'use "values" or "map", or type "boolean"')
    if "values" in spec and "map" in spec:
        raise _fail(source, where, 'has both "values" and "map"', "give one of them")
    if "values" in spec:
        values = _cells(source, f"{where}.values", spec["values"], empty_ok=False)
        _overlap(source, f"{where}.values", values, null, "values and null")
        return {"values": values}
    if "map" in spec:
        mapping = spec["map"]
        if not isinstance(mapping, dict) or not mapping or not all(isinstance(v, str) for v in mapping.values()):
            raise _fail(source, f"{where}.map", "must be a non-empty object of cell text -> value text",
                        'write it as {"A": "reader_a", "B": "reader_b"}')  # fmt: skip
        cleaned = {str(k).strip(): v.strip() for k, v in mapping.items()}
        _overlap(source, f"{where}.map", tuple(cleaned), null, "map and null")
        return {"mapping": cleaned}
    return {}


def _bool_label(source: str, column: str, spec: Mapping[str, Any], null: tuple[str, ...]) -> dict[str, Any]:
    where = f"labels.{column}"
    if "values" in spec or "map" in spec:
        raise _fail(
            source, where, 'a "boolean" label has no "values"/"map"', 'use "true" and "false", or type "string"'
        )
    for key in ("true", "false"):
        if key not in spec:
            raise _fail(source, f"{where}.{key}", "missing", f'list the cells meaning {key}, e.g. "{key}": ["1"]')
    true = _cells(source, f"{where}.true", spec["true"], empty_ok=False)
    false = _cells(source, f"{where}.false", spec["false"], empty_ok=False)
    _overlap(source, where, true, false, "true and false")
    _overlap(source, where, true + false, null, "true/false and null")
    return {"true": true, "false": false}


def _label(source: str, column: str, spec: Any, null: tuple[str, ...]) -> LabelSpec:
    where = f"labels.{column}"
    if not isinstance(spec, dict):
        raise _fail(
            source, where, "must be an object", 'write it as {"type": "boolean", "true": [...], "false": [...]}'
        )
    _check_keys(source, f"{where}.", spec, _LABEL_KEYS)
    kind = _TYPES.get(str(spec.get("type")))
    if kind is None:
        raise _fail(source, f"{where}.type", f"{short(str(spec.get('type')))!r} is not a known type",
                    'use "boolean" (cells mapped to true/false) or "string"')  # fmt: skip
    own_null = _cells(source, f"{where}.null", spec["null"]) if "null" in spec else null
    rules = (_bool_label if kind == "bool" else _string_label)(source, column, spec, own_null)
    description = _text(source, f"{where}.description", spec.get("description"))
    field_name = _field_name(source, column, spec.get("field"))
    return LabelSpec(column, field_name, kind, null=own_null, description=description, **rules)


def _labels(source: str, labels: Any, null: tuple[str, ...], id_column: str) -> tuple[LabelSpec, ...]:
    if not isinstance(labels, dict) or not labels:
        raise _fail(source, "labels", "must be a non-empty object: label column -> how its cells are read",
                    'e.g. "labels": {"Pneumonia": {"type": "boolean", "true": ["1"], "false": ["0"]}}')  # fmt: skip
    parsed = []
    for column, spec in labels.items():
        if column.strip() == id_column:
            raise _fail(source, f"labels.{column}", "is the id_column", "a label column cannot also name the image")
        parsed.append(_label(source, column.strip(), spec, null))
    seen: dict[str, str] = {}
    for label in parsed:
        if label.field in RESERVED_FIELDS:
            raise _fail(source, f"labels.{label.column}", f"field {label.field!r} is taken by the layer table",
                        f'give it another "field" ({", ".join(RESERVED_FIELDS)} are taken)')  # fmt: skip
        if label.field in seen:
            raise _fail(source, f"labels.{label.column}", f"field {label.field!r} is also {seen[label.field]!r}'s",
                        'give one of them another "field"')  # fmt: skip
        seen[label.field] = label.column
    return tuple(parsed)


def _object(data: bytes, source: str) -> dict[str, Any]:
    try:
        payload = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise LayerSpecError(f"{source}: not UTF-8 text (offset {exc.start}); save the spec as UTF-8 JSON") from exc
    except ValueError as exc:
        raise LayerSpecError(f"{source}: not valid JSON ({exc}); fix the spec (a JSON object)") from exc
    if not isinstance(payload, dict):
        raise LayerSpecError(f"{source}: the spec must be a JSON object ({{...}}), not {type(payload).__name__}; "
                             'write it as {"id_column": "Image", "labels": {...}}')  # fmt: skip
    return payload


def parse_spec(data: bytes, source: str) -> LayerSpec:
    """Read and check a generic layer's spec (``<file>.layer.json``).

    Raises:
        LayerSpecError: the spec is not a JSON object or breaks a rule; the message names the file, key and fix.
    """
    payload = _object(data, source)
    _check_keys(source, "", payload, _TOP_KEYS)
    if "licence" in payload and "license" in payload:
        raise _fail(source, "licence", 'given twice ("licence" and "license")', "keep one of them")
    if "id_column" not in payload:
        raise _fail(
            source, "id_column", "missing", 'name the column holding the image file names: "id_column": "Image"'
        )
    id_column = _text(source, "id_column", payload["id_column"])
    if not id_column:
        raise _fail(source, "id_column", "is empty", "name the column holding the image file names")
    if "labels" not in payload:
        raise _fail(source, "labels", "missing", "list the label columns and how their cells are read")
    null = _cells(source, "null", payload["null"]) if "null" in payload else ("",)
    return LayerSpec(
        source=source,
        id_column=id_column,
        labels=_labels(source, payload["labels"], null, id_column),
        description=_text(source, "description", payload.get("description")),
        citation=_text(source, "citation", payload.get("citation")),
        licence=_text(source, "licence", payload.get("licence", payload.get("license"))),
        null=null,
    )


def check_columns(spec: LayerSpec, header: Sequence[str], file_name: str) -> None:
    """Check that the spec's id column and label columns are columns of a CSV header (names stripped, exact).

    Raises:
        LayerSpecError: naming the spec, the key, the columns found and the closest column name.
    """
    found = [cell.strip() for cell in header]
    wanted = [("id_column", spec.id_column), *((f"labels.{label.column}", label.column) for label in spec.labels)]
    for key, column in wanted:
        count = found.count(column)
        if count == 1:
            continue
        if count > 1:
            raise _fail(spec.source, key, f"{file_name} has {count} columns named {column!r}",
                        "rename the others, so the spec names one column")  # fmt: skip
        close = difflib.get_close_matches(column, found, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(spec.source, key, f"{column!r} is not a column of {file_name}; columns found: {brief(found)}{hint}",
                    "name a column exactly as the file's header spells it")  # fmt: skip
