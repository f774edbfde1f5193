"""What is checked in each metadata file, how severe each failure is, and the ``cxr validate`` command.

Each file kind has its suite (``expectations/data_entry.json``, ``bbox.json``, ``split_lists.json``) and the
derived columns its checks need, added here to a copy of the loaded frame (``index_patient_id``,
``labels_in_vocabulary``, ``x_end``, ``in_both``...; each suite's ``meta.derived_columns`` lists them). How a
suite file is written and run is :mod:`pipeline.curate.suites`; what a run found, :mod:`pipeline.curate.outcomes`.

Severity policy
---------------
* ``blocking``: structural problems that would make a release wrong: missing columns or wrong dtypes, and
  every row-level defect of the primary labels (Data_Entry): image names off the ``<8 digits>_<3 digits>.png``
  pattern, duplicate images, non-numeric patient ids or follow-ups, patient ids that differ from the image
  name, labels outside the vocabulary, ``No Finding`` combined with a finding, sex other than M/F, view other
  than PA/AP. A blocking failure stops a run before publishing (``outcomes.raise_if_blocking``).
* ``warning`` that **quarantines the row**: row-level defects of an auxiliary file (the box list, the split
  lists): a box whose label is not one of the 8 box findings, whose image name is malformed, whose coordinates
  are not numbers, negative, not positive or outside the 1024x1024 image, or that repeats an earlier row
  exactly; a split-list line that is not an image name, that repeats an earlier line of its list, or whose name
  is in both lists. Such a row costs only itself (:mod:`pipeline.curate.quarantine`); a file more than half of
  whose rows are defective is refused (``DefectiveFileError``), like a file with an unknown header.
* ``warning``: known oddities of the real dataset, reported but not fatal: impossible or unparsable ages
  (loaded as null and flagged), follow-up numbers that differ from the image name suffix (the v2020 file
  renumbered them), boxes or list entries whose image is not in the Data_Entry file given (normal for
  subsets), patients in both split lists, two different boxes of one (image, label).

``cxr validate FILE...`` (:func:`validate_main`) runs the same checks on local files, each refused before it is
read when it is over its kind's size limit (``pipeline.ingest.files.MAX_FILE_BYTES``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.curate.metadata import LoadedTable, load_any_table
from pipeline.curate.normalise import NOTE_SIZE_COLUMNS_MISSING
from pipeline.curate.outcomes import SuiteRun, ValidationReport
from pipeline.curate.quarantine import defect_table, mark_repeats, refuse_if_mostly_defective
from pipeline.curate.reading import decode_text, split_list_entries
from pipeline.curate.suites import validate_frame
from pipeline.errors import SuiteError, UnknownHeaderError, UnreadableFileError
from pipeline.ingest.files import MAX_FILE_BYTES, check_size
from pipeline.nih import IMAGE_NAME_RE, LABELS, NO_FINDING, TEST_LIST, TRAIN_VAL_LIST

__all__ = [
    "LIST_FILES",
    "validate_bboxes",
    "validate_data_entry",
    "validate_files",
    "validate_main",
    "validate_split_lists",
]

logger = logging.getLogger(__name__)
_SIZE_COLUMNS = ("original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y")
LIST_FILES: dict[str, str] = {"train_val": TRAIN_VAL_LIST, "test": TEST_LIST}


def _data_entry_frame(table: LoadedTable) -> pd.DataFrame:
    frame = table.frame.reset_index(drop=True).copy()
    frame["line"] = table.line_numbers()
    names = frame["image_index"].astype("str") if "image_index" in frame else pd.Series("", index=frame.index)
    parts = names.str.extract(IMAGE_NAME_RE.pattern)
    frame["index_patient_id"] = pd.to_numeric(parts["patient"], errors="coerce").astype("Int64")
    frame["index_follow_up"] = pd.to_numeric(parts["follow_up"], errors="coerce").astype("Int64")
    labels = [v if isinstance(v, list) else [] for v in frame.get("labels", pd.Series([[]] * len(frame)))]
    frame["label_count"] = np.array([len(v) for v in labels], dtype="int64")
    frame["labels_in_vocabulary"] = np.array([all(x in LABELS for x in v) for v in labels], dtype=bool)
    frame["no_finding_alone"] = np.array([NO_FINDING not in v or len(v) == 1 for v in labels], dtype=bool)
    present = pd.Series(True, index=frame.index)
    if NOTE_SIZE_COLUMNS_MISSING not in table.notes and set(_SIZE_COLUMNS) <= set(frame.columns):
        present = frame[list(_SIZE_COLUMNS)].notna().all(axis=1)
    frame["size_spacing_present"] = present.astype(bool)
    return frame


def validate_data_entry(table: LoadedTable) -> SuiteRun:
    """Validate a loaded Data_Entry table against ``expectations/data_entry.json``.

    Returns:
        The run: one outcome per expectation, in suite order, and GX's result.
    """
    return validate_frame("data_entry", _data_entry_frame(table))


def _bbox_frame(table: LoadedTable, known_images: set[str] | None) -> pd.DataFrame:
    frame = table.frame.reset_index(drop=True).copy()
    frame["line"] = table.line_numbers()
    if {"x", "y", "w", "h"} <= set(frame.columns):
        frame["x_end"] = frame["x"] + frame["w"]
        frame["y_end"] = frame["y"] + frame["h"]
    names = frame["image_index"] if "image_index" in frame else pd.Series("", index=frame.index)
    frame["image_known"] = names.isin(known_images) if known_images is not None else True
    return mark_repeats(frame, [c for c in ("image_index", "label", "x", "y", "w", "h") if c in frame])


def _with_defects(run: SuiteRun, kind: str, files: pd.Series, names: str) -> SuiteRun:
    """The run with its defects as ``ROW_DEFECT_COLUMNS`` (``files``: each validated row's file name)."""
    if run.defects is None:
        return run
    return replace(run, defects=defect_table(run.defects, kind, files, names))


def validate_bboxes(table: LoadedTable, known_images: set[str] | None) -> SuiteRun:
    """Validate a loaded bounding-box table against ``expectations/bbox.json``.

    Args:
        table: The table from ``load_bboxes``.
        known_images: Image names of the Data_Entry file; None skips the ``image_known`` check.

    Returns:
        The run; its ``defects`` (``ROW_DEFECT_COLUMNS``) are the rows to quarantine.

    Raises:
        DefectiveFileError: if more than half of the boxes are defective.
    """
    skip = () if known_images is not None else ("image_known",)
    frame = _bbox_frame(table, known_images)
    run = validate_frame("bbox", frame, skip=skip)
    run = _with_defects(run, "bbox", pd.Series(table.source, index=frame.index), "image_index")
    refuse_if_mostly_defective(run.defects, {table.source: len(frame)}, "bounding-box list")
    return run


def _split_frame(entries: dict[str, list[tuple[int, str]]], known: set[str] | None) -> pd.DataFrame:
    rows = [(role, line, name) for role, items in entries.items() for line, name in items]
    frame = pd.DataFrame(rows, columns=["list", "line", "name"]).astype({"list": "str", "name": "str"})
    frame = mark_repeats(frame, ["list", "name"])
    sets = {role: {name for _, name in items} for role, items in entries.items()}
    frame["in_both"] = [n in sets["train_val"] and n in sets["test"] for n in frame["name"]]
    patients = {role: {n[:8] for n in names if IMAGE_NAME_RE.match(n)} for role, names in sets.items()}
    both = patients["train_val"] & patients["test"]
    frame["patient_in_both"] = [bool(IMAGE_NAME_RE.match(n)) and n[:8] in both for n in frame["name"]]
    frame["known"] = frame["name"].isin(known) if known is not None else True
    return frame.astype({"in_both": bool, "patient_in_both": bool, "known": bool})


def validate_split_lists(
    train_val: Sequence[str] | Sequence[tuple[int, str]],
    test: Sequence[str] | Sequence[tuple[int, str]],
    known_images: set[str] | None,
    files: Mapping[str, str] | None = None,
) -> SuiteRun:
    """Validate the train_val and test lists against ``expectations/split_lists.json``.

    Args:
        train_val: Names (line ``i`` is entry ``i``) or ``(line, name)`` pairs from ``split_list_entries``.
        test: Likewise for the test list.
        known_images: Image names of the Data_Entry file; None skips the ``name_known`` check.
        files: The file name of each list (``train_val``, ``test``), for the defects; NIH's names by default.

    Returns:
        The run; its ``defects`` (``ROW_DEFECT_COLUMNS``) are the lines to quarantine.

    Raises:
        DefectiveFileError: if more than half of a list's lines are defective.
    """

    def numbered(items: Sequence[str] | Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
        return [item if isinstance(item, tuple) else (i, item) for i, item in enumerate(items, 1)]

    names = {**LIST_FILES, **(files or {})}
    frame = _split_frame({"train_val": numbered(train_val), "test": numbered(test)}, known_images)
    run = validate_frame("split_lists", frame, skip=() if known_images is not None else ("name_known",))
    run = _with_defects(run, "split_list", frame["list"].map(names), "name")
    sizes = {names[role]: int((frame["list"] == role).sum()) for role in ("train_val", "test")}
    refuse_if_mostly_defective(run.defects, sizes, "split list")
    return run


def _kind_by_name(path: Path) -> str:
    """The size-limit kind a file's name suggests (checked again once its content says what it is)."""
    if path.suffix.lower() == ".txt":
        return "split_list"
    return "bbox" if "bbox" in path.name.lower() else "data_entry"


def _read(path: Path) -> bytes:
    """Read a file named on the command line; one over its kind's size limit is refused before it is read."""
    kind = _kind_by_name(path)
    try:
        check_size(str(path), path.stat().st_size, kind)
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES[kind] + 1)  # a file that grew since is refused below, not read whole
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    check_size(str(path), len(data), kind)
    return data


def _is_split_list(path: Path, data: bytes) -> bool:
    first = next((line.strip() for line in decode_text(data, str(path)).splitlines() if line.strip()), "")
    return bool(IMAGE_NAME_RE.match(first)) or ("," not in first and path.suffix.lower() == ".txt")


def validate_files(paths: list[Path]) -> ValidationReport:
    """Detect each file's kind and variant, load it and validate it.

    Data_Entry files are validated first; bounding boxes and split lists are checked against their image
    names (that check is skipped when no Data_Entry file is given). A split list whose name contains
    ``test`` is the test list, any other the train_val list.

    Raises:
        UnreadableFileError: if a file cannot be read or decoded, is over its size limit (``FileTooLargeError``)
            or mostly defective rows (``DefectiveFileError``); the message names the file.
        UnknownHeaderError: if a CSV header matches no known variant.
        SuiteError: if an expectation suite is invalid.
    """
    variants: dict[str, str] = {}
    notes: dict[str, dict[str, int]] = {}
    tables: list[LoadedTable] = []
    lists: dict[str, list[tuple[int, str]]] = {"train_val": [], "test": []}
    list_files: dict[str, str] = {}
    for path in paths:
        data = _read(path)
        if _is_split_list(path, data):
            check_size(str(path), len(data), "split_list")
            role = "test" if "test" in path.name.lower() else "train_val"
            lists[role] += split_list_entries(data, str(path))
            list_files[role] = " + ".join(filter(None, [list_files.get(role), str(path)]))
            variants[str(path)] = "split_list/names"
        else:
            tables.append(load_any_table(data, str(path)))
            check_size(str(path), len(data), "bbox" if tables[-1].variant.startswith("bbox/") else "data_entry")
            variants[str(path)] = tables[-1].variant
            notes[str(path)] = tables[-1].notes
    entries = [t for t in tables if t.variant.startswith("data_entry/")]
    known = {str(n) for t in entries for n in t.frame["image_index"]} if entries else None
    runs = [validate_data_entry(t) for t in entries]
    runs += [validate_bboxes(t, known) for t in tables if t.variant.startswith("bbox/")]
    if lists["train_val"] or lists["test"]:
        runs.append(validate_split_lists(lists["train_val"], lists["test"], known, list_files))
    return ValidationReport.from_runs(runs, variants, {source: n for source, n in notes.items() if n})


def validate_main(argv: list[str] | None = None) -> int:
    """Run ``cxr validate FILE... [--json]``.

    Returns:
        0 if no blocking expectation failed (warnings and the rows a run would quarantine are listed), 1 if one
        did, 2 if a file cannot be read or recognised, is too large or mostly defective (the message names it).
    """
    parser = argparse.ArgumentParser(prog="cxr validate", description="Validate NIH ChestX-ray14 metadata.")
    parser.add_argument("files", nargs="+", type=Path, help="Data_Entry / BBox_List CSVs, split list TXTs")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = validate_files(args.files)
    except (UnreadableFileError, UnknownHeaderError, SuiteError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        else:
            print(f"cxr validate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else report.summary_text())
    return 0 if report.ok else 1
