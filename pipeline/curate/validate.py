"""Validate NIH metadata with Great Expectations suites kept as GX suite JSON in ``expectations/``.

Severity policy
---------------
Each expectation carries ``meta.severity`` (what this module reads); GX's native ``severity`` field mirrors it
(``blocking`` -> ``critical``, ``warning`` -> ``warning``) so GX tooling shows the same thing.

* ``blocking``: structural problems that would make a release wrong: missing columns or wrong dtypes, and
  every row-level defect of the primary labels (Data_Entry): image names off the ``<8 digits>_<3 digits>.png``
  pattern, duplicate images, non-numeric patient ids or follow-ups, patient ids that differ from the image
  name, labels outside the vocabulary, ``No Finding`` combined with a finding, sex other than M/F, view other
  than PA/AP. A blocking failure stops a run before publishing (``raise_if_blocking``).
* ``warning`` that **quarantines the row** (``meta.on_failure: quarantine_row``): row-level defects of an
  auxiliary file (the box list, the split lists): a box whose label is not one of the 8 box findings, whose
  image name is malformed, whose coordinates are not numbers, negative, not positive or outside the 1024x1024
  image, or that repeats an earlier row exactly; a split-list line that is not an image name, that repeats an
  earlier line of its list, or whose name is in both lists. Such a row costs only itself: it is left out and
  listed with its file, line and reason (``ValidationReport.row_defects``; in a run, the release's
  ``quarantine.parquet``). A file more than half of whose rows are defective is not the file it is named
  after: it is refused (``DefectiveFileError``), like a file with an unknown header.
* ``warning``: known oddities of the real dataset, reported but not fatal: impossible or unparsable ages
  (loaded as null and flagged), follow-up numbers that differ from the image name suffix (the v2020 file
  renumbered them), boxes or list entries whose image is not in the Data_Entry file given (normal for
  subsets), patients in both split lists, two different boxes of one (image, label).

Checks that cannot be written as a plain GX expectation run on derived columns added to a copy of the frame
(``index_patient_id``, ``labels_in_vocabulary``, ``x_end``, ``in_both``...; each suite's
``meta.derived_columns`` lists them). Loading and running the suites with GX lives in ``pipeline.curate.suites``;
``pipeline.curate.datadocs`` renders the results as offline HTML.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.curate.metadata import (
    MAX_FILE_BYTES,
    NOTE_SIZE_COLUMNS_MISSING,
    LoadedTable,
    UnknownHeaderError,
    UnreadableFileError,
    check_size,
    decode_text,
    load_any_table,
    short,
    split_list_entries,
)
from pipeline.curate.suites import (
    GX_SEVERITY,
    SUITES_DIR,
    ExpectationOutcome,
    Severity,
    SuiteError,
    SuiteRun,
    load_suite,
    run_suite,
    validate_frame,
)
from pipeline.errors import BadDataError
from pipeline.nih import IMAGE_NAME_RE, LABELS, NO_FINDING, TEST_LIST, TRAIN_VAL_LIST

__all__ = [
    "GX_SEVERITY",
    "ROW_DEFECT_COLUMNS",
    "SUITES_DIR",
    "BlockingValidationError",
    "DefectiveFileError",
    "ExpectationOutcome",
    "Severity",
    "SuiteError",
    "SuiteRun",
    "ValidationReport",
    "load_suite",
    "raise_if_blocking",
    "run_suite",
    "validate_bboxes",
    "validate_data_entry",
    "validate_files",
    "validate_main",
    "validate_split_lists",
]

logger = logging.getLogger(__name__)
_SIZE_COLUMNS = ("original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y")
#: One row per quarantined row of an auxiliary file: ``kind`` (``bbox`` or ``split_list``), file name, line,
#: the image name the row gives (as written), and what is wrong with it.
ROW_DEFECT_COLUMNS = ("kind", "file", "line", "image_index", "reason")
#: A file with more defective rows than this share is refused as a whole (it is not the file it is named after).
MAX_DEFECTIVE_SHARE = 0.5
#: How many quarantined rows the text summary lists, and the JSON report holds (the count is always complete).
ROWS_LISTED, ROWS_IN_JSON = 20, 1000
LIST_FILES: dict[str, str] = {"train_val": TRAIN_VAL_LIST, "test": TEST_LIST}


class DefectiveFileError(UnreadableFileError):
    """More than half of an auxiliary file's rows are defective: the file is refused, not its rows quarantined."""


def empty_row_defects() -> pd.DataFrame:
    """A row-defect table without rows (``ROW_DEFECT_COLUMNS``)."""
    frame = pd.DataFrame({c: pd.Series([], dtype="str") for c in ROW_DEFECT_COLUMNS})
    return frame.astype({"line": "int64"})


@dataclass(frozen=True)
class ValidationReport:
    """All expectation outcomes of one validation run, with the variant detected for each file.

    ``runs`` keeps GX's own result of each suite run (for Data Docs); it is empty when the report was built
    from outcomes alone.
    """

    outcomes: list[ExpectationOutcome]
    variants: dict[str, str]
    runs: tuple[SuiteRun, ...] = ()
    notes: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_runs(
        cls, runs: Sequence[SuiteRun], variants: dict[str, str], notes: dict[str, dict[str, int]] | None = None
    ) -> ValidationReport:
        """Build a report from suite runs (outcomes in order); ``notes``: loader quirk counts per file."""
        return cls([o for run in runs for o in run.outcomes], dict(variants), tuple(runs), dict(notes or {}))

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        """Failed blocking expectations."""
        return [o for o in self.outcomes if not o.success and o.severity == "blocking"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        """Failed warning expectations."""
        return [o for o in self.outcomes if not o.success and o.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no blocking expectation failed."""
        return not self.blocking_failures

    @property
    def row_defects(self) -> pd.DataFrame:
        """The quarantined rows of the auxiliary files (``ROW_DEFECT_COLUMNS``), in file and line order."""
        parts = [run.defects for run in self.runs if run.defects is not None and len(run.defects)]
        if not parts:
            return empty_row_defects()
        frame = pd.concat(parts, ignore_index=True)[list(ROW_DEFECT_COLUMNS)]
        return frame.sort_values(["file", "line"], kind="stable", ignore_index=True)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data (the first ``ROWS_IN_JSON`` quarantined rows)."""
        defects = self.row_defects
        return {
            "ok": self.ok,
            "variants": dict(self.variants),
            "notes": {source: dict(counts) for source, counts in self.notes.items()},
            "blocking_failures": len(self.blocking_failures),
            "warnings": len(self.warnings),
            "quarantined_rows": len(defects),
            "row_defects": [
                {k: plain_value(v) for k, v in row.items()} for row in defects.head(ROWS_IN_JSON).to_dict("records")
            ],
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    def _notes_text(self, source: str) -> str:
        counts = self.notes.get(source) or {}
        return f" ({', '.join(f'{k}={v}' for k, v in counts.items())})" if counts else ""

    def summary_text(self) -> str:
        """Return a short human summary: verdict, counts, one line per failed expectation, the quarantined rows."""
        verdict = "OK" if self.ok else "BLOCKED"
        defects = self.row_defects
        lines = [
            f"validation {verdict}: {len(self.outcomes)} expectations, "
            f"{len(self.blocking_failures)} blocking failures, {len(self.warnings)} warnings, "
            f"{len(defects)} rows quarantined"
        ]
        lines += [f"  {source}: {variant}{self._notes_text(source)}" for source, variant in self.variants.items()]
        lines += ["  " + o.render() for o in self.blocking_failures + self.warnings]
        if len(defects):
            lines.append(f"  quarantined rows (left out, the rest of each file is used): {len(defects)}")
            lines += [f"    {row_defect_text(row)}" for row in defects.head(ROWS_LISTED).to_dict("records")]
            if len(defects) > ROWS_LISTED:
                lines.append(f"    ... and {len(defects) - ROWS_LISTED:,} more")
        return "\n".join(lines)


def plain_value(value: Any) -> Any:
    """A numpy scalar as its Python value (for JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def row_defect_text(row: Mapping[Any, Any]) -> str:
    """``BBox_List_2017.csv line 986 (00000001_001.png): label ... is not ...``: one quarantined row."""
    return f"{row['file']} line {row['line']} ({short(str(row['image_index']))}): {row['reason']}"


class BlockingValidationError(BadDataError):
    """Raised to stop a run when a blocking expectation failed; carries the report."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        failures = "\n".join("  " + o.render() for o in report.blocking_failures)
        super().__init__(f"{len(report.blocking_failures)} blocking expectation(s) failed:\n{failures}")


def raise_if_blocking(report: ValidationReport) -> None:
    """Raise BlockingValidationError if any blocking expectation failed.

    Raises:
        BlockingValidationError: listing suite, expectation, column, count and examples of each failure.
    """
    if not report.ok:
        raise BlockingValidationError(report)


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
    return _mark_repeats(frame, [c for c in ("image_index", "label", "x", "y", "w", "h") if c in frame])


def _mark_repeats(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Add ``repeated`` (the row repeats an earlier one on ``key``) and ``first_line`` (that earlier row's line)."""
    if not key or not len(frame):
        return frame.assign(repeated=False, first_line=pd.Series(pd.NA, index=frame.index, dtype="Int64"))
    repeated = frame.duplicated(key, keep="first")
    first = frame.groupby(key, dropna=False, sort=False)["line"].transform("first")
    return frame.assign(repeated=repeated.astype(bool), first_line=first.where(repeated).astype("Int64"))


def _defects(run: SuiteRun, kind: str, files: pd.Series, names: str) -> SuiteRun:
    """The run with its defects as ``ROW_DEFECT_COLUMNS`` (``files``: each validated row's file name)."""
    if run.defects is None:
        return run
    rows = run.defects
    table = pd.DataFrame(
        {
            "kind": kind,
            "file": files.loc[rows.index].astype("str"),
            "line": rows["line"].astype("int64"),
            "image_index": rows[names].astype("str").map(short).astype("str"),  # as written, cut if absurdly long
            "reason": rows["reason"].astype("str"),
        }
    )
    return replace(run, defects=table.reset_index(drop=True))


def _refuse_if_mostly_defective(defects: pd.DataFrame | None, rows_per_file: Mapping[str, int], what: str) -> None:
    """Raise DefectiveFileError for a file more than ``MAX_DEFECTIVE_SHARE`` of whose rows are defective."""
    if defects is None or not len(defects):
        return
    for name, group in defects.groupby("file", sort=True):
        total = rows_per_file.get(str(name), 0)
        if len(group) > MAX_DEFECTIVE_SHARE * total:
            first = group.iloc[0]
            raise DefectiveFileError(
                f"{name}: {len(group):,} of {total:,} rows have defects (e.g. line {first['line']}: "
                f"{first['reason']}); more than half, so this is not a usable {what}: check the file or download "
                "it again"
            )


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
    run = _defects(run, "bbox", pd.Series(table.source, index=frame.index), "image_index")
    _refuse_if_mostly_defective(run.defects, {table.source: len(frame)}, "bounding-box list")
    return run


def _split_frame(entries: dict[str, list[tuple[int, str]]], known: set[str] | None) -> pd.DataFrame:
    rows = [(role, line, name) for role, items in entries.items() for line, name in items]
    frame = pd.DataFrame(rows, columns=["list", "line", "name"]).astype({"list": "str", "name": "str"})
    frame = _mark_repeats(frame, ["list", "name"])
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
    run = _defects(run, "split_list", frame["list"].map(names), "name")
    sizes = {names[role]: int((frame["list"] == role).sum()) for role in ("train_val", "test")}
    _refuse_if_mostly_defective(run.defects, sizes, "split list")
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
