"""Checking a loaded annotation layer against its kind's suite and the Data_Entry table; quarantining its bad rows.

Each kind has its suite, ``expectations/layer_<kind>.json`` (run under the name ``layer_<id>``), with the severity
rules of the other auxiliary files (:mod:`pipeline.curate.validate`):

* blocking: the file has rows, its columns are present, of their types;
* warning that quarantines the row (with its reason): an image name off ``<8 digits>_<3 digits>.png``; a cell
  outside its column's vocabulary (the loader's problem text); a label-version row with labels outside NIH's 15,
  none, or ``No Finding`` with a finding; a patient id that differs from Data_Entry's for the image; a row that
  repeats an earlier row of its image exactly (the repeat goes); rows of one image that disagree (all of them go:
  none is picked); for boxes, the primary box list's rules, a label among NIH's 14 findings;
* warning only: an image that is not in Data_Entry (``image_known``): the plan quarantines those rows later, when
  it knows which images the release publishes.

A file more than half of whose rows are defective is refused (:class:`~pipeline.errors.DefectiveFileError`), as
is an empty file of a layer of several files (one of one file fails the blocking ``has_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline import nih
from pipeline.curate.outcomes import SuiteRun, plain
from pipeline.curate.quarantine import defect_table, refuse_if_mostly_defective
from pipeline.curate.suites import SUITES_DIR, validate_frame
from pipeline.errors import DefectiveFileError
from pipeline.layers.load import PROBLEM_COLUMN, LoadedLayer
from pipeline.layers.schema import Layer

__all__ = ["DEFECT_KIND", "CheckedLayer", "check_layer", "suite_name"]

#: The ``kind`` of a layer row in the row quarantine (``ROW_DEFECT_COLUMNS``).
DEFECT_KIND = "layer"
_BOX_KEY = ["image_index", "label", "x", "y", "w", "h"]
_WHAT = {
    "label_version": "label-version layer file",
    "expert_labels": "expert-label layer file",
    "boxes": "box layer file",
    "generic": "annotation layer file",
}


@dataclass(frozen=True)
class CheckedLayer:
    """A layer after its checks: the layer, its rows that were not quarantined, and its suite run (the run's
    ``defects`` are ``ROW_DEFECT_COLUMNS`` rows of kind ``layer``)."""

    layer: Layer
    table: pd.DataFrame
    run: SuiteRun


def suite_name(layer_id: str) -> str:
    """The name a layer's suite run has in the validation report: ``layer_<id>``."""
    return f"layer_{layer_id}"


def _where(places: Sequence[tuple[str, int]], several: bool) -> str:
    """``lines 3, 6`` (``test_labels.csv line 3, validation_labels.csv lines 2, 5`` when the layer has several
    files): where some rows are, in order."""
    by_file: dict[str, list[str]] = {}
    for file, line in places:
        by_file.setdefault(file, []).append(str(line))
    parts = [f"{'lines' if len(lines) > 1 else 'line'} {', '.join(lines)}" for lines in by_file.values()]
    return ", ".join(f"{file} {part}" if several else part for file, part in zip(by_file, parts, strict=True))


def _signature(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Each row's values as one comparable text (label lists compared as sets)."""

    def value(v: Any) -> Any:
        if isinstance(v, list | tuple | np.ndarray):
            return sorted(str(x) for x in v)
        return plain(v)

    return [repr([value(v) for v in row]) for row in frame[list(columns)].itertuples(index=False)]


def _repeats(frame: pd.DataFrame, values: Sequence[str], considered: pd.Series, several: bool) -> pd.DataFrame:
    """``repeated`` and ``first_seen`` (an exact repeat of an earlier row of its image), ``conflicting`` and
    ``conflict_lines`` (rows of one image that disagree); only the ``considered`` rows take part."""
    places = list(zip(frame["source_file"].astype("str"), frame["line"].astype("int64"), strict=True))
    where = pd.Series(places, index=frame.index, dtype="object")
    rows = pd.DataFrame({"image": frame["image_index"], "values": _signature(frame, values), "where": where})
    rows = rows[considered.to_numpy()]
    distinct = rows.groupby("image", sort=False)["values"].transform("nunique")
    conflicting = distinct > 1
    repeated = rows.duplicated(["image", "values"], keep="first") & ~conflicting
    first = rows.groupby(["image", "values"], sort=False)["where"].transform("first")[repeated]
    first = first.map(lambda place: _where([place], several))
    lines = rows[conflicting].groupby("image", sort=False)["where"].agg(lambda p: _where(list(p), several))
    out = pd.DataFrame(index=frame.index)
    out["repeated"] = repeated.reindex(frame.index, fill_value=False).astype(bool)
    out["first_seen"] = first.reindex(frame.index)
    out["conflicting"] = conflicting.reindex(frame.index, fill_value=False).astype(bool)
    out["conflict_lines"] = frame["image_index"].map(lines).where(out["conflicting"])
    return out


def _label_columns(frame: pd.DataFrame) -> dict[str, pd.Series]:
    labels = [list(v) if isinstance(v, list | tuple | np.ndarray) else [] for v in frame["labels"]]
    unknown = [[x for x in v if x not in nih.LABELS] for v in labels]
    return {
        "label_count": pd.Series([len(v) for v in labels], index=frame.index, dtype="int64"),
        "labels_in_vocabulary": pd.Series([not u for u in unknown], index=frame.index, dtype=bool),
        "unknown_labels": pd.Series([", ".join(map(repr, u)) or None for u in unknown], index=frame.index),
        "no_finding_alone": pd.Series([nih.NO_FINDING not in v or len(v) == 1 for v in labels], index=frame.index),
    }


def _patients(frame: pd.DataFrame, entry: pd.DataFrame) -> dict[str, pd.Series]:
    known = entry.drop_duplicates("image_index").set_index("image_index")["patient_id"]
    theirs = frame["image_index"].map(known).astype("Int64")
    differs = (frame["patient_id"].notna() & theirs.notna() & (frame["patient_id"] != theirs)).fillna(False)
    return {"entry_patient_id": theirs, "patient_consistent": ~differs.astype(bool)}


def _check_frame(loaded: LoadedLayer, entry: pd.DataFrame) -> pd.DataFrame:
    """The frame the layer's suite runs on: the table (a generic layer's without its fields: their names are the
    spec's) and the derived columns its checks need (the suite's ``meta.derived_columns``)."""
    layer, table = loaded.layer, loaded.table.reset_index(drop=True)
    fields = list(_BOX_KEY[1:]) if layer.kind == "boxes" else layer.field_names
    kept = [c for c in table.columns if c != PROBLEM_COLUMN and (layer.kind != "generic" or c not in fields)]
    frame = table[kept].copy()
    frame["value_problem"] = table[PROBLEM_COLUMN]
    frame["values_readable"] = table[PROBLEM_COLUMN].isna().astype(bool)
    frame["image_known"] = table["image_index"].isin(set(entry["image_index"].astype("str"))).astype(bool)
    derived: dict[str, pd.Series] = {}
    if layer.kind == "label_version":
        derived |= _label_columns(table)
    if "patient_id" in table:
        derived |= _patients(table, entry)
    if layer.kind == "boxes":
        derived |= {"x_end": table["x"] + table["w"], "y_end": table["y"] + table["h"]}
        derived |= dict(_repeats(table, _BOX_KEY[1:], pd.Series(True, index=table.index), len(layer.files) > 1))
    else:
        # a label version's booleans follow from its labels: comparing the labels (as sets) is enough, and fast
        compared = ["labels"] if layer.kind == "label_version" else fields
        values = [*compared, *(["patient_id"] if "patient_id" in table else [])]
        derived |= dict(_repeats(table, values, frame["values_readable"], len(layer.files) > 1))
    return frame.assign(**derived)


def _refuse_empty_files(layer: Layer) -> None:
    if len(layer.files) < 2:
        return  # one file: the suite's blocking has_rows says it
    for file in layer.files:
        if not file.rows:
            raise DefectiveFileError(f"{file.name}: no rows below its header (annotation layer {layer.id!r}, which "
                                     "joins several files); check the file or leave it out of the layer")  # fmt: skip


def _kept(table: pd.DataFrame, defects: pd.DataFrame | None) -> pd.DataFrame:
    rows = table.drop(columns=[PROBLEM_COLUMN])
    if defects is None or not len(defects):
        return rows.reset_index(drop=True)
    bad = pd.MultiIndex.from_arrays([defects["file"].astype("str"), defects["line"].astype("int64")])
    mine = pd.MultiIndex.from_arrays([rows["source_file"].astype("str"), rows["line"].astype("int64")])
    return rows[~mine.isin(bad)].reset_index(drop=True)


def check_layer(loaded: LoadedLayer, entry: pd.DataFrame) -> CheckedLayer:
    """Run a layer's suite; quarantine its defective rows.

    Args:
        loaded: The layer as :func:`pipeline.layers.load.load_layer` loaded it.
        entry: The normalised Data_Entry frame (``image_index``, ``patient_id``, ...).

    Returns:
        The layer, the rows not quarantined (rows of images not in Data_Entry included: only reported here), and
        the suite run (its ``defects`` in ``ROW_DEFECT_COLUMNS``).

    Raises:
        DefectiveFileError: more than half of one file's rows are defective, or a file of several is empty.
        SuiteError: the kind's suite file is invalid.
    """
    layer = loaded.layer
    _refuse_empty_files(layer)
    frame = _check_frame(loaded, entry)
    run = validate_frame(suite_name(layer.id), frame, SUITES_DIR / f"layer_{layer.kind}.json")
    if run.defects is not None:
        run = replace(run, defects=defect_table(run.defects, DEFECT_KIND, frame["source_file"], "image_index"))
    refuse_if_mostly_defective(run.defects, {f.name: f.rows for f in layer.files}, _WHAT[layer.kind])
    return CheckedLayer(layer, _kept(loaded.table, run.defects), run)
