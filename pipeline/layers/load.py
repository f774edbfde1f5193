"""Loading an annotation layer's files into its normalised table: one row per image (or per box), typed fields.

:func:`load_layer` reads each file's cells (:func:`pipeline.curate.reading.read_csv`: the same decoding errors as
the other metadata files), takes its format from the spec beside it (a generic layer, :mod:`pipeline.layers.spec`)
or else from its header (:func:`pipeline.layers.formats.recognise_layer`), and converts its cells:

* ``label_version``: as Data_Entry is normalised (``No_Finding`` -> ``No Finding``); ``labels`` (list of str), the
  14 finding booleans and ``no_finding`` from the labels, ``patient_id`` (Int64);
* ``expert_labels``: ``YES``/``NO`` in any case -> True/False (``expert_values_not_upper_case``), empty -> null
  (not read); ``Set Id`` ``test``/``val`` (``validation`` read as ``val``), or, without the column, from a file
  name that says so (``test_labels.csv``, ``validation_labels.csv``: ``set_id_from_file_name``); ``patient_id``
  (null without the column);
* ``boxes``: as the box list is loaded (``Infiltrate`` -> ``Infiltration``): one row per box;
* ``generic``: one column per field of the spec.

Every table has ``image_index``, then the fields, ``source_file`` and ``line`` (the physical line, header is 1). A
cell that is not in its column's vocabulary becomes null and its row carries the problem in ``PROBLEM_COLUMN``
(``Fracture 'MAYBE' is not YES or NO``), for :mod:`pipeline.layers.checks` to quarantine the row: loading never
drops a row. The files of one layer (the same id given twice) must be of one kind; they are concatenated.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import nih
from pipeline.curate.metadata import _bbox_table, _cells_frame
from pipeline.curate.normalise import count_note, normalise_data_entry, to_int
from pipeline.curate.reading import RawTable, read_csv, short
from pipeline.curate.variants import HeaderMatch
from pipeline.errors import BadDataError
from pipeline.layers.formats import EXPERT_COLUMNS, SET_ID_COLUMN, recognise_layer
from pipeline.layers.schema import BOX_FIELDS, EXPERT_FIELDS, LABEL_VERSION_FIELDS, Layer, LayerField, LayerFile
from pipeline.layers.spec import LayerSpec, check_columns, parse_spec

__all__ = ["DEFAULT_TEXTS", "PROBLEM_COLUMN", "LayerInput", "LoadedLayer", "load_layer", "set_id_from_file_name"]

log = logging.getLogger(__name__)

#: The column of a loaded table that holds each row's vocabulary problems (None when every cell was readable);
#: no field can be named so (field names start with a letter). :mod:`pipeline.layers.checks` removes it.
PROBLEM_COLUMN = "_problem"
_CITATION_NIH = (
    "Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale Chest X-ray Database and "
    "Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases. IEEE Conference on "
    "Computer Vision and Pattern Recognition (CVPR), 2017, pp. 3462-3471."
)
_CITATION_GOOGLE = (
    "Majkowska A, Mittal S, Steiner DF, et al. Chest Radiograph Interpretation with Deep Learning Models: Assessment "
    "with Radiologist-adjudicated Reference Standards and Population-adjusted Evaluation. Radiology, 2020."
)
#: (description, citation, licence) of a recognised format's layer (a generic layer's come from its spec).
DEFAULT_TEXTS: dict[str, tuple[str, str, str]] = {
    "label_version": ("labels per image from a Data_Entry file: another label version of NIH ChestX-ray14",
                      _CITATION_NIH, ""),
    "expert_labels": ("Google's 2019 radiologist-adjudicated labels of four findings (fracture, pneumothorax, "
                      "airspace opacity, nodule or mass) for NIH ChestX-ray14 images of their test and validation "
                      "sets; null where a finding was not read", _CITATION_GOOGLE, ""),
    "boxes": ("bounding boxes of findings per image, in the 1024-pixel space of the published image", "", ""),
}  # fmt: skip
_SETS = {"test": "test", "val": "val", "validation": "val"}
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class LayerInput:
    """One file of a layer (or its spec) as read: its name (as messages show it), location and bytes."""

    name: str
    location: str
    data: bytes


@dataclass(frozen=True)
class LoadedLayer:
    """A layer's files loaded: the layer, its normalised table (with ``PROBLEM_COLUMN``), each file's variant and
    quirk counts (only non-zero counts, only files that have some). The spec's ``LayerFile`` has ``rows`` 0."""

    layer: Layer
    table: pd.DataFrame
    variants: dict[str, str]
    notes: dict[str, dict[str, int]]


@dataclass(frozen=True)
class _Part:
    """One file loaded: its kind and variant, its table and quirk counts, its rows."""

    kind: str
    variant: str
    table: pd.DataFrame
    notes: dict[str, int]
    file: LayerFile


def set_id_from_file_name(name: str) -> str | None:
    """``test`` or ``val`` when a file's name says so unambiguously (``test_labels.csv``, ``validation_labels.csv``,
    ``val.csv``), else None (``google2019_nih-chest-xray-labels.csv``, ``test_and_val.csv``)."""
    words = set(_WORD.findall(name.replace("\\", "/").rsplit("/", 1)[-1].lower()))
    sets = {_SETS[word] for word in words if word in _SETS}
    return sets.pop() if len(sets) == 1 else None


def _nothing(index: pd.Index) -> pd.Series:
    """An object column of None (``pd.Series(None, ...)`` would hold NaN)."""
    return pd.Series([None] * len(index), index=index, dtype="object")


def _join_problems(parts: Sequence[pd.Series], index: pd.Index) -> pd.Series:
    """Each row's problems, ``; ``-joined (None when it has none)."""
    if not parts:
        return _nothing(index)
    rows = zip(*(p.tolist() for p in parts), strict=True)
    joined = ["; ".join(p for p in row if isinstance(p, str) and p) or None for row in rows]
    return pd.Series(joined, index=index, dtype="object")


def _patient(cells: pd.DataFrame, notes: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    """Patient ids (Int64, null when absent or empty) and a problem for a cell that is not a number."""
    if "patient_id" not in cells:
        return pd.Series(pd.NA, index=cells.index, dtype="Int64"), _nothing(cells.index)
    raw = cells["patient_id"]
    quirks: dict[str, int] = {}
    ids = to_int(raw, quirks, "patient_id")
    for key, value in quirks.items():
        if not key.startswith("unparsable"):
            count_note(notes, key, value)
    bad = ids.isna() & (raw != "")
    count_note(notes, "unparsable_patient_id", bad.sum())
    problems = [f"Patient ID {short(cell)!r} is not a number" if b else None for cell, b in zip(raw, bad, strict=True)]
    return ids, pd.Series(problems, index=cells.index, dtype="object")


def _label_version(raw: RawTable, match: HeaderMatch, notes: dict[str, int]) -> pd.DataFrame:
    cells = _cells_frame(raw, match.keys, notes)
    frame = normalise_data_entry(cells, notes)
    labels = frame["labels"].tolist()
    columns: dict[str, object] = {"image_index": frame["image_index"], "labels": frame["labels"]}
    for label in nih.LABELS:
        columns[nih.finding_column(label)] = np.array([label in names for names in labels], dtype=bool)
    _, problem = _patient(cells, {})
    columns["patient_id"] = frame["patient_id"]
    columns[PROBLEM_COLUMN] = _join_problems([problem], cells.index)
    return pd.DataFrame(columns, index=cells.index)


def _yes_no(cells: pd.Series, title: str, notes: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    upper = cells.str.upper()
    yes, no = upper == "YES", upper == "NO"
    count_note(notes, "expert_values_not_upper_case", ((yes | no) & (cells != upper)).sum())
    values = pd.Series(pd.NA, index=cells.index, dtype="boolean")
    values[yes], values[no] = True, False
    bad = ~(yes | no | (cells == ""))
    problems = [f"{title} {short(c)!r} is not YES or NO" if b else None for c, b in zip(cells, bad, strict=True)]
    return values, pd.Series(problems, index=cells.index, dtype="object")


def _set_ids(cells: pd.DataFrame, source: str, notes: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    if "set_id" not in cells:
        named = set_id_from_file_name(source)
        count_note(notes, "set_id_from_file_name", len(cells) if named else 0)
        return pd.Series([named] * len(cells), index=cells.index, dtype="object"), _nothing(cells.index)
    raw = cells["set_id"]
    lower = raw.str.lower()
    sets = lower.map(_SETS)
    count_note(notes, "set_id_validation_read_as_val", (lower == "validation").sum())
    count_note(notes, "set_id_not_lower_case", (sets.notna() & (raw != lower)).sum())
    bad = sets.isna() & (raw != "")
    problems = [
        f"{SET_ID_COLUMN} {short(c)!r} is not test or val" if b else None for c, b in zip(raw, bad, strict=True)
    ]
    values = [s if isinstance(s, str) else None for s in sets]
    return pd.Series(values, index=cells.index, dtype="object"), pd.Series(problems, index=cells.index, dtype="object")


def _expert_labels(raw: RawTable, match: HeaderMatch, source: str, notes: dict[str, int]) -> pd.DataFrame:
    cells = _cells_frame(raw, match.keys, notes)
    columns: dict[str, pd.Series] = {"image_index": cells["image_index"]}
    problems = []
    for field, title in EXPERT_COLUMNS.items():
        columns[field], problem = _yes_no(cells[field], title, notes)
        problems.append(problem)
    columns["set_id"], problem = _set_ids(cells, source, notes)
    columns["patient_id"], patient_problem = _patient(cells, notes)
    columns[PROBLEM_COLUMN] = _join_problems([*problems, problem, patient_problem], cells.index)
    return pd.DataFrame(columns, index=cells.index)


def _boxes(raw: RawTable, source: str, notes: dict[str, int]) -> pd.DataFrame:
    loaded = _bbox_table(raw, source)
    notes.update(loaded.notes)
    frame = loaded.frame.reset_index(drop=True)
    return frame.assign(**{PROBLEM_COLUMN: _nothing(frame.index)})


def _generic(raw: RawTable, spec: LayerSpec, source: str, notes: dict[str, int]) -> pd.DataFrame:
    check_columns(spec, raw.header, source)
    used = {spec.id_column, *(label.column for label in spec.labels)}
    names = [cell.strip() for cell in raw.header]
    keys = [name if name in used else f"_column_{i}" for i, name in enumerate(names)]
    cells = _cells_frame(raw, keys, notes)
    columns: dict[str, pd.Series] = {"image_index": cells[spec.id_column]}
    problems = []
    for label in spec.labels:
        columns[label.field], problem = label.read(cells[label.column])
        problems.append(problem)
    columns[PROBLEM_COLUMN] = _join_problems(problems, cells.index)
    return pd.DataFrame(columns, index=cells.index)


def _load_file(item: LayerInput, spec: LayerSpec | None) -> _Part:
    raw = read_csv(item.data, item.name)
    notes: dict[str, int] = {}
    if spec is not None:
        kind, variant = "generic", "spec"
        table = _generic(raw, spec, item.name, notes)
    else:
        kind, match = recognise_layer(raw.header, item.name)
        variant = match.variant.name
        if kind == "boxes":
            table = _boxes(raw, item.name, notes)  # keeps the box list's own notes (NIH's has trailing columns)
        else:
            notes.update(match.notes)
            if kind == "label_version":
                table = _label_version(raw, match, notes)
            else:
                table = _expert_labels(raw, match, item.name, notes)
    table = table.reset_index(drop=True)
    problems = table.pop(PROBLEM_COLUMN)
    table["source_file"] = pd.Series(item.name, index=table.index, dtype="object")
    table["line"] = np.array(raw.lines, dtype="int64")
    table[PROBLEM_COLUMN] = problems
    file = LayerFile(item.name, item.location, hashlib.sha256(item.data).hexdigest(), len(raw.rows))
    log.info("%s: %d rows, %s (%s), notes %s", item.name, len(table), kind, variant, notes)
    return _Part(kind, variant, table, {k: v for k, v in notes.items() if v}, file)


def _check_inputs(layer_id: str, files: Sequence[LayerInput]) -> None:
    if not files:
        raise BadDataError(f"annotation layer {layer_id!r} has no files; give it as {layer_id}=FILE")
    names = [f.name for f in files]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadDataError(f"annotation layer {layer_id!r}: two of its files are named {twice[0]} (rows are told "
                           "apart by file name in the layer table and the quarantine); rename one of them")  # fmt: skip


def _one_kind(layer_id: str, parts: Sequence[_Part]) -> str:
    kinds = {p.kind: p.file.name for p in parts}
    if len(kinds) > 1:
        shown = ", ".join(f"{name} is {kind}" for kind, name in kinds.items())
        raise BadDataError(f"annotation layer {layer_id!r} joins files of different formats ({shown}); one layer "
                           "holds one format: give the files as separate layers (another id)")  # fmt: skip
    return parts[0].kind


def _fields(kind: str, spec: LayerSpec | None) -> tuple[LayerField, ...]:
    if spec is not None:
        return spec.fields
    return {"label_version": LABEL_VERSION_FIELDS, "expert_labels": EXPERT_FIELDS, "boxes": BOX_FIELDS}[kind]


def _summed(notes: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in notes:
        for key, value in counts.items():
            count_note(total, key, value)
    return total


def load_layer(layer_id: str, files: Sequence[LayerInput], spec: LayerInput | None) -> LoadedLayer:
    """Load a layer's files (and the spec beside them) into its normalised table.

    Raises:
        UnreadableFileError: a file is empty, binary, not UTF-8 or not CSV.
        UnknownHeaderError: a file without a spec has a header of no known format.
        LayerSpecError: the spec breaks a rule, or names a column a file does not have.
        BadDataError: the layer has no files, two files of one name, or files of different formats.
    """
    _check_inputs(layer_id, files)
    parsed = parse_spec(spec.data, spec.name) if spec is not None else None
    parts = [_load_file(item, parsed) for item in files]
    kind = _one_kind(layer_id, parts)
    table = pd.concat([p.table for p in parts], ignore_index=True)
    description, citation, licence = (
        (parsed.description, parsed.citation, parsed.licence) if parsed is not None else DEFAULT_TEXTS[kind]
    )
    spec_file = None if spec is None else LayerFile(spec.name, spec.location, hashlib.sha256(spec.data).hexdigest(), 0)
    layer = Layer(
        id=layer_id,
        kind=kind,
        variant="+".join(dict.fromkeys(p.variant for p in parts)),
        files=tuple(p.file for p in parts),
        fields=_fields(kind, parsed),
        spec=spec_file,
        description=description,
        citation=citation,
        licence=licence,
        notes=_summed([p.notes for p in parts]),
    )
    notes = {p.file.name: p.notes for p in parts if p.notes}
    return LoadedLayer(layer, table, {p.file.name: p.variant for p in parts}, notes)
