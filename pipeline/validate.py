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
``meta.derived_columns`` lists them). GX is imported lazily (it takes seconds), with its logger, warnings
and progress bars silenced.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

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

logger = logging.getLogger(__name__)

Severity = Literal["blocking", "warning"]
#: The suite JSON files; ``CXR_EXPECTATIONS_DIR`` overrides it (e.g. for an install without the source tree).
_SOURCE_SUITES = Path(__file__).resolve().parent.parent / "expectations"
SUITES_DIR = Path(os.environ.get("CXR_EXPECTATIONS_DIR") or _SOURCE_SUITES)
GX_SEVERITY: dict[str, str] = {"blocking": "critical", "warning": "warning"}
MAX_EXAMPLES = 5
_RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_EXAMPLES,
    "return_unexpected_index_query": False,
}
_SIZE_COLUMNS = ("original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y")


class SuiteError(ValueError):
    """An expectation suite JSON file is invalid or GX did not load all of its expectations."""


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, in plain Python types."""

    suite: str
    expectation: str
    column: str | None
    severity: Severity
    success: bool
    unexpected_count: int
    element_count: int
    examples: list[dict[str, Any]]
    description: str
    check: str = ""

    def render(self) -> str:
        """Return one line naming severity, suite, expectation, column, count and a few example rows."""
        where = f" on {self.column}" if self.column else ""
        head = f"[{self.severity}] {self.suite}.{self.check or self.expectation} ({self.expectation}{where})"
        shown = "; ".join(", ".join(f"{k}={v!r}" for k, v in row.items()) for row in self.examples[:3])
        return f"{head}: {self.description}" + (f" | e.g. {shown}" if shown else "")


@dataclass(frozen=True)
class ValidationReport:
    """All expectation outcomes of one validation run, with the variant detected for each file."""

    outcomes: list[ExpectationOutcome]
    variants: dict[str, str]

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
            "blocking_failures": len(self.blocking_failures),
            "warnings": len(self.warnings),
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    def summary_text(self) -> str:
        """Return a short human summary: verdict, counts, then one line per failed expectation."""
        verdict = "OK" if self.ok else "BLOCKED"
        lines = [
            f"validation {verdict}: {len(self.outcomes)} expectations, "
            f"{len(self.blocking_failures)} blocking failures, {len(self.warnings)} warnings"
        ]
        lines += [f"  {source}: {variant}" for source, variant in self.variants.items()]
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


@contextmanager
def _quiet() -> Iterator[None]:
    logging.getLogger("great_expectations").setLevel(logging.CRITICAL + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _gx(module: str = "great_expectations") -> Any:
    with _quiet():
        return importlib.import_module(module)


@functools.cache
def _batch_definition() -> Any:
    with _quiet():
        context = _gx().get_context(mode="ephemeral")
        config_types = _gx("great_expectations.data_context.types.base")
        context.variables.progress_bars = config_types.ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("cxr_metadata").add_dataframe_asset("frame")
        return asset.add_batch_definition_whole_dataframe("whole_frame")


def _check_payload(payload: dict[str, Any], path: Path) -> None:
    for number, spec in enumerate(payload.get("expectations", []), 1):
        severity = (spec.get("meta") or {}).get("severity")
        if severity not in GX_SEVERITY:
            raise SuiteError(
                f"{path}: expectation {number} ({spec.get('type')}) has meta.severity "
                f"{severity!r}; expected 'blocking' or 'warning'"
            )
        if spec.get("severity", GX_SEVERITY[severity]) != GX_SEVERITY[severity]:
            raise SuiteError(
                f"{path}: expectation {number} ({spec.get('type')}): severity "
                f"{spec['severity']!r} contradicts meta.severity {severity!r}"
            )


def load_suite(path: Path) -> Any:
    """Load a GX suite JSON file, checking that GX kept every expectation.

    GX drops expectations of unknown type (or with invalid kwargs) with only a log line, so the count of
    loaded expectations is compared with the JSON's.

    Raises:
        SuiteError: if the file is not valid JSON, lacks severities, or GX dropped an expectation.
    """
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SuiteError(f"{path}: cannot read expectation suite: {exc}") from exc
    _check_payload(payload, path)
    with _quiet():
        suite = _gx("great_expectations.core.expectation_suite").ExpectationSuite(**payload)
    wanted = [spec.get("type") for spec in payload.get("expectations", [])]
    loaded = [expectation.expectation_type for expectation in suite.expectations]
    if len(loaded) != len(wanted):
        dropped = sorted(set(wanted) - set(loaded)) or "an invalid configuration"
        raise SuiteError(
            f"{path}: GX loaded {len(loaded)} of {len(wanted)} expectations; dropped {dropped} "
            "(unknown expectation type or invalid kwargs)"
        )
    return suite


def run_suite(name: str, frame: pd.DataFrame, suite_path: Path | None = None) -> list[ExpectationOutcome]:
    """Validate a frame (with a RangeIndex and a ``line`` column) against a suite, in suite order."""
    path = suite_path or SUITES_DIR / f"{name}.json"
    suite = load_suite(path)
    frame = frame.reset_index(drop=True)
    with _quiet():
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        results = batch.validate(suite, result_format=_RESULT_FORMAT).results
    order = {e.meta.get("check"): i for i, e in enumerate(suite.expectations)}
    outcomes = [_outcome(name, result, frame) for result in results]
    return sorted(outcomes, key=lambda o: order.get(o.check, len(order)))


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(kwargs["column_list"])
    return None


def _error_of(result: Any) -> str | None:
    info = result.exception_info or {}
    for candidate in [info, *(v for v in info.values() if isinstance(v, dict))]:
        if candidate.get("raised_exception"):
            return str(candidate.get("exception_message"))
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _examples(result: dict[str, Any], frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index in result.get("partial_unexpected_index_list") or []:
        if not isinstance(index, int | np.integer) or index not in frame.index:
            continue
        row = frame.loc[index]
        example = {"line": _plain(row.get("line"))}
        example.update({c: _plain(row[c]) for c in columns if c in frame.columns and c != "line"})
        rows.append(example)
    return rows[:MAX_EXAMPLES]


def _describe(statement: str, success: bool, result: dict[str, Any], counts: tuple[int, int]) -> str:
    unexpected, total = counts
    if "observed_value" in result and "details" not in result:
        verdict = "passed" if success else "failed"
        return f"{statement}: {verdict} (observed {_plain(result['observed_value'])})"
    missing = (result.get("details") or {}).get("mismatched", {}).get("missing")
    if missing:
        return f"{statement}: missing columns {sorted(missing)}"
    if success:
        return f"{statement}: passed ({total} rows)"
    return f"{statement}: {unexpected} of {total} rows fail"


def _outcome(suite: str, result: Any, frame: pd.DataFrame) -> ExpectationOutcome:
    config = result.expectation_config
    meta, kwargs, details = dict(config.meta or {}), dict(config.kwargs), dict(result.result or {})
    column = _column_of(kwargs)
    success = bool(result.success)
    element_count = int(details.get("element_count", len(frame)))
    missing = (details.get("details") or {}).get("mismatched", {}).get("missing") or []
    default_count = len(missing) if missing else (0 if success else element_count)
    unexpected = int(details.get("unexpected_count", default_count))
    statement = str(config.description or config.type)
    error = _error_of(result)
    description = (
        f"{statement}: could not be evaluated: {error}"
        if error
        else _describe(statement, success, details, (unexpected, element_count))
    )
    domain = [c for c in (column or "").split(",") if c]
    return ExpectationOutcome(
        suite=suite,
        expectation=str(config.type),
        column=column,
        severity=meta["severity"],
        success=success,
        unexpected_count=unexpected,
        element_count=element_count,
        examples=_examples(details, frame, [*meta.get("example_columns", []), *domain]),
        description=description,
        check=str(meta.get("check", "")),
    )


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


def validate_data_entry(table: LoadedTable) -> list[ExpectationOutcome]:
    """Validate a loaded Data_Entry table against ``expectations/data_entry.json``.

    Returns:
        One outcome per expectation, in suite order.
    """
    return run_suite("data_entry", _data_entry_frame(table))


def _bbox_frame(table: LoadedTable, known_images: set[str] | None) -> pd.DataFrame:
    frame = table.frame.reset_index(drop=True).copy()
    frame["line"] = table.line_numbers()
    if {"x", "y", "w", "h"} <= set(frame.columns):
        frame["x_end"] = frame["x"] + frame["w"]
        frame["y_end"] = frame["y"] + frame["h"]
    names = frame["image_index"] if "image_index" in frame else pd.Series("", index=frame.index)
    frame["image_known"] = names.isin(known_images) if known_images is not None else True
    return frame


def validate_bboxes(table: LoadedTable, known_images: set[str] | None) -> list[ExpectationOutcome]:
    """Validate a loaded bounding-box table against ``expectations/bbox.json``.

    Args:
        table: The table from ``load_bboxes``.
        known_images: Image names of the Data_Entry file; None skips the ``image_known`` check.
    """
    outcomes = run_suite("bbox", _bbox_frame(table, known_images))
    return [o for o in outcomes if known_images is not None or o.check != "image_known"]


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
) -> list[ExpectationOutcome]:
    """Validate the train_val and test lists against ``expectations/split_lists.json``.

    Args:
        train_val: Names (line ``i`` is entry ``i``) or ``(line, name)`` pairs from ``split_list_entries``.
        test: Likewise for the test list.
        known_images: Image names of the Data_Entry file; None skips the ``name_known`` check.
    """

    def numbered(items: Sequence[str] | Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
        return [item if isinstance(item, tuple) else (i, item) for i, item in enumerate(items, 1)]

    frame = _split_frame({"train_val": numbered(train_val), "test": numbered(test)}, known_images)
    outcomes = run_suite("split_lists", frame)
    return [o for o in outcomes if known_images is not None or o.check != "name_known"]


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
    entries = [t for t in tables if t.variant.startswith("data_entry/")]
    known = {str(n) for t in entries for n in t.frame["image_index"]} if entries else None
    outcomes = [o for t in entries for o in validate_data_entry(t)]
    outcomes += [o for t in tables if t.variant.startswith("bbox/") for o in validate_bboxes(t, known)]
    if lists["train_val"] or lists["test"]:
        outcomes += validate_split_lists(lists["train_val"], lists["test"], known)
    return ValidationReport(outcomes, variants)


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
