"""Validate NIH metadata with Great Expectations suites kept as GX suite JSON in ``expectations/``.

Severity policy
---------------
Each expectation carries ``meta.severity`` (what this module reads); GX's native ``severity`` field mirrors it
(``blocking`` -> ``critical``, ``warning`` -> ``warning``) so GX tooling shows the same thing.

* ``blocking``: structural problems that would make a release wrong: missing columns or wrong dtypes,
  image names off the ``<8 digits>_<3 digits>.png`` pattern, duplicate images, non-numeric patient ids or
  follow-ups, patient ids that differ from the image name, labels outside the vocabulary, ``No Finding``
  combined with a finding, sex other than M/F, view other than PA/AP, boxes outside the 1024x1024 image or
  not positive, names listed in both split lists. A blocking failure stops a run before publishing
  (``raise_if_blocking``).
* ``warning``: known oddities of the real dataset, reported but not fatal: impossible or unparsable ages
  (loaded as null and flagged), follow-up numbers that differ from the image name suffix (the v2020 file
  renumbered them), boxes or list entries whose image is not in the Data_Entry file given (normal for
  subsets), patients in both split lists, repeated (image, label) boxes.

Checks that cannot be written as a plain GX expectation run on derived columns added to a copy of the frame
(``index_patient_id``, ``labels_in_vocabulary``, ``x_end``, ``in_both``...; each suite's
``meta.derived_columns`` lists them). Loading and running the suites with GX lives in ``pipeline.suites``;
``pipeline.datadocs`` renders the results as offline HTML.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import BadDataError
from pipeline.metadata import (
    NOTE_SIZE_COLUMNS_MISSING,
    LoadedTable,
    UnknownHeaderError,
    UnreadableFileError,
    decode_text,
    load_any_table,
    split_list_entries,
)
from pipeline.nih import IMAGE_NAME_RE, LABELS, NO_FINDING
from pipeline.suites import (
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

__all__ = [
    "GX_SEVERITY",
    "SUITES_DIR",
    "BlockingValidationError",
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

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data."""
        return {
            "ok": self.ok,
            "variants": dict(self.variants),
            "notes": {source: dict(counts) for source, counts in self.notes.items()},
            "blocking_failures": len(self.blocking_failures),
            "warnings": len(self.warnings),
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    def _notes_text(self, source: str) -> str:
        counts = self.notes.get(source) or {}
        return f" ({', '.join(f'{k}={v}' for k, v in counts.items())})" if counts else ""

    def summary_text(self) -> str:
        """Return a short human summary: verdict, counts, then one line per failed expectation."""
        verdict = "OK" if self.ok else "BLOCKED"
        lines = [
            f"validation {verdict}: {len(self.outcomes)} expectations, "
            f"{len(self.blocking_failures)} blocking failures, {len(self.warnings)} warnings"
        ]
        lines += [f"  {source}: {variant}{self._notes_text(source)}" for source, variant in self.variants.items()]
        lines += ["  " + o.render() for o in self.blocking_failures + self.warnings]
        return "\n".join(lines)


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
    return frame


def validate_bboxes(table: LoadedTable, known_images: set[str] | None) -> SuiteRun:
    """Validate a loaded bounding-box table against ``expectations/bbox.json``.

    Args:
        table: The table from ``load_bboxes``.
        known_images: Image names of the Data_Entry file; None skips the ``image_known`` check.
    """
    skip = () if known_images is not None else ("image_known",)
    return validate_frame("bbox", _bbox_frame(table, known_images), skip=skip)


def _split_frame(entries: dict[str, list[tuple[int, str]]], known: set[str] | None) -> pd.DataFrame:
    rows = [(role, line, name) for role, items in entries.items() for line, name in items]
    frame = pd.DataFrame(rows, columns=["list", "line", "name"]).astype({"list": "str", "name": "str"})
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
) -> SuiteRun:
    """Validate the train_val and test lists against ``expectations/split_lists.json``.

    Args:
        train_val: Names (line ``i`` is entry ``i``) or ``(line, name)`` pairs from ``split_list_entries``.
        test: Likewise for the test list.
        known_images: Image names of the Data_Entry file; None skips the ``name_known`` check.
    """

    def numbered(items: Sequence[str] | Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
        return [item if isinstance(item, tuple) else (i, item) for i, item in enumerate(items, 1)]

    frame = _split_frame({"train_val": numbered(train_val), "test": numbered(test)}, known_images)
    return validate_frame("split_lists", frame, skip=() if known_images is not None else ("name_known",))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc


def _is_split_list(path: Path, data: bytes) -> bool:
    first = next((line.strip() for line in decode_text(data, str(path)).splitlines() if line.strip()), "")
    return bool(IMAGE_NAME_RE.match(first)) or ("," not in first and path.suffix.lower() == ".txt")


def validate_files(paths: list[Path]) -> ValidationReport:
    """Detect each file's kind and variant, load it and validate it.

    Data_Entry files are validated first; bounding boxes and split lists are checked against their image
    names (that check is skipped when no Data_Entry file is given). A split list whose name contains
    ``test`` is the test list, any other the train_val list.

    Raises:
        UnreadableFileError: if a file cannot be read or decoded (the message names the file).
        UnknownHeaderError: if a CSV header matches no known variant.
        SuiteError: if an expectation suite is invalid.
    """
    variants: dict[str, str] = {}
    notes: dict[str, dict[str, int]] = {}
    tables: list[LoadedTable] = []
    lists: dict[str, list[tuple[int, str]]] = {"train_val": [], "test": []}
    for path in paths:
        data = _read(path)
        if _is_split_list(path, data):
            role = "test" if "test" in path.name.lower() else "train_val"
            lists[role] += split_list_entries(data, str(path))
            variants[str(path)] = "split_list/names"
        else:
            tables.append(load_any_table(data, str(path)))
            variants[str(path)] = tables[-1].variant
            notes[str(path)] = tables[-1].notes
    entries = [t for t in tables if t.variant.startswith("data_entry/")]
    known = {str(n) for t in entries for n in t.frame["image_index"]} if entries else None
    runs = [validate_data_entry(t) for t in entries]
    runs += [validate_bboxes(t, known) for t in tables if t.variant.startswith("bbox/")]
    if lists["train_val"] or lists["test"]:
        runs.append(validate_split_lists(lists["train_val"], lists["test"], known))
    return ValidationReport.from_runs(runs, variants, {source: n for source, n in notes.items() if n})


def validate_main(argv: list[str] | None = None) -> int:
    """Run ``cxr validate FILE... [--json]``.

    Returns:
        0 if no blocking expectation failed (warnings are listed), 1 if one did, 2 if a file cannot be read or
        recognised (the message names the file).
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
