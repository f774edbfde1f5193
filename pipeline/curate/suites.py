"""The expectation-suite file format and the Great Expectations machinery: load a suite, run it on a frame.

This module owns how a suite is written and executed, not what it checks (that is ``expectations/*.json``
and the derived columns of :mod:`pipeline.curate.validate`). A suite is a GX suite JSON file in ``SUITES_DIR``
(``expectations/``; ``$CXR_EXPECTATIONS_DIR`` overrides it). Besides GX's own fields, each expectation carries:

* ``meta.severity``: ``blocking`` or ``warning``, what the pipeline reads; GX's native ``severity`` must mirror
  it (``GX_SEVERITY``: ``blocking`` -> ``critical``), so GX tooling shows the same thing;
* ``meta.check``: the expectation's name in messages (and in ``skip``); ``meta.example_columns``: the columns
  shown with each failing example row;
* ``meta.on_failure``: ``report`` (the default) or ``quarantine_row`` (only for a warning, with ``meta.reason``:
  a template for each failing row's reason, ``label {label!r} is not ...``, formatted with the row's values,
  each cut short).

A file that breaks these rules, or that GX does not load whole, is a :class:`~pipeline.errors.SuiteError`.
After a suite ran, each ``quarantine_row`` expectation that failed is run once more on its own with GX's
``COMPLETE`` result format to get every failing row; ``SuiteRun.defects`` holds those rows with their reasons.
If GX cannot name the failing rows (the expectation raised), the outcome becomes blocking: a defect is never
let through unnamed. Results are turned into :mod:`pipeline.curate.outcomes` here.

GX is imported lazily (it takes seconds), with its logger, warnings and progress bars silenced. A suite runs
on a pandas frame through an ephemeral GX context of its own, made for that validation.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.curate.outcomes import ExpectationOutcome, SuiteRun, plain
from pipeline.curate.reading import short
from pipeline.errors import SuiteError, UsageError

logger = logging.getLogger(__name__)

#: The suite JSON files; ``CXR_EXPECTATIONS_DIR`` overrides it (e.g. for an install without the source tree).
_SOURCE_SUITES = Path(__file__).resolve().parents[2] / "expectations"
SUITES_DIR = Path(os.environ.get("CXR_EXPECTATIONS_DIR") or _SOURCE_SUITES)
GX_SEVERITY: dict[str, str] = {"blocking": "critical", "warning": "warning"}
MAX_EXAMPLES = 5
_RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_EXAMPLES,
    "return_unexpected_index_query": False,
}
_ROWS_FORMAT = {"result_format": "COMPLETE", "return_unexpected_index_query": False}
#: ``meta.on_failure`` values: report the failure only (the default), or quarantine each failing row.
ON_FAILURE = ("report", "quarantine_row")
QUARANTINE_ROW = "quarantine_row"


def _silence_gx_loggers() -> None:
    # some GX modules set their own logger level (INFO), so the parent's level is not enough; only loggers not
    # silenced yet are set (each setLevel clears every logger's cache: thousands of calls cost about a second)
    names = [name for name in logging.root.manager.loggerDict if name.startswith("great_expectations")]
    for logger in (logging.getLogger(name) for name in ["great_expectations", *names]):
        if logger.level != logging.CRITICAL + 1:
            logger.setLevel(logging.CRITICAL + 1)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence GX's loggers and warnings."""
    _silence_gx_loggers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            _silence_gx_loggers()


def gx(module: str = "great_expectations") -> Any:
    """Import a GX module quietly (lazily: importing GX takes seconds).

    Raises:
        UsageError: Great Expectations is not installed (an install for reading releases only).
    """
    with quiet():
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "great_expectations":
                raise
            raise UsageError(
                "Great Expectations is not installed: this install can read releases but not run the pipeline; "
                "install it with pip install -e '.[pipeline]' (or '.[airflow]')"
            ) from None


def _batch_definition() -> Any:
    """A new ephemeral context's whole-frame batch definition (0.02 s). Not kept from one validation to the next:
    the context's execution engine caches every batch it loaded (the whole frame) and every metric it computed,
    so a kept one held each validated frame for the life of the process."""
    with quiet():
        context = gx().get_context(mode="ephemeral")
        config_types = gx("great_expectations.data_context.types.base")
        context.variables.progress_bars = config_types.ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("cxr_metadata").add_dataframe_asset("frame")
        return asset.add_batch_definition_whole_dataframe("whole_frame")


def _check_payload(payload: dict[str, Any], path: Path) -> None:
    for number, spec in enumerate(payload.get("expectations", []), 1):
        meta = spec.get("meta") or {}
        severity = meta.get("severity")
        on_failure = meta.get("on_failure", "report")
        if on_failure not in ON_FAILURE or (
            on_failure == QUARANTINE_ROW and (severity != "warning" or not isinstance(meta.get("reason"), str))
        ):
            raise SuiteError(
                f"{path}: expectation {number} ({spec.get('type')}) has meta.on_failure {on_failure!r}; expected "
                "'report' or 'quarantine_row' (a warning with a meta.reason template)"
            )
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
    with quiet():
        suite = gx("great_expectations.core.expectation_suite").ExpectationSuite(**payload)
    wanted = [spec.get("type") for spec in payload.get("expectations", [])]
    loaded = [expectation.expectation_type for expectation in suite.expectations]
    if len(loaded) != len(wanted):
        dropped = sorted(set(wanted) - set(loaded)) or "an invalid configuration"
        raise SuiteError(
            f"{path}: GX loaded {len(loaded)} of {len(wanted)} expectations; dropped {dropped} "
            "(unknown expectation type or invalid kwargs)"
        )
    return suite


def validate_frame(
    name: str, frame: pd.DataFrame, suite_path: Path | None = None, skip: Collection[str] = ()
) -> SuiteRun:
    """Validate a frame (with a ``line`` column) against a suite; outcomes come in suite order.

    Args:
        name: The suite name (``expectations/<name>.json`` unless ``suite_path`` is given).
        frame: The rows, with the suite's derived columns.
        suite_path: Another suite file.
        skip: ``meta.check`` names of expectations to leave out (e.g. checks needing a file not given).

    Raises:
        SuiteError: if the suite file is invalid.
    """
    suite = load_suite(suite_path or SUITES_DIR / f"{name}.json")
    for expectation in [e for e in suite.expectations if e.meta.get("check") in skip]:
        suite.expectations.remove(expectation)
    frame = frame.reset_index(drop=True)
    with quiet():
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=_RESULT_FORMAT)
    result.meta.get("batch_markers", {}).pop("ge_load_time", None)  # a timestamp: keeps reports reproducible
    order = {e.meta.get("check"): i for i, e in enumerate(suite.expectations)}
    outcomes = sorted((_outcome(name, r, frame) for r in result.results), key=lambda o: order.get(o.check, len(order)))
    quarantining = {e.meta.get("check"): e for e in suite.expectations if e.meta.get("on_failure") == QUARANTINE_ROW}
    failing = [o for o in outcomes if not o.success and o.check in quarantining]
    if not failing:
        return SuiteRun(name, outcomes, result)
    reasons: dict[int, list[str]] = {}
    named: dict[str, ExpectationOutcome] = {}
    for outcome in failing:
        expectation = quarantining[outcome.check]
        rows = _failing_rows(batch, expectation, frame)
        if rows is None:
            named[outcome.check] = replace(
                outcome,
                severity="blocking",
                description=outcome.description + "; the failing rows could not be identified, so nothing is let "
                "through: fix the file",
            )
            continue
        for row in rows:
            reasons.setdefault(row, []).append(_reason(str(expectation.meta["reason"]), frame.iloc[row]))
    outcomes = [named.get(o.check, o) for o in outcomes]
    positions = sorted(reasons)
    defects = frame.loc[positions].assign(reason=["; ".join(reasons[i]) for i in positions]) if positions else None
    return SuiteRun(name, outcomes, result, defects)


def _failing_rows(batch: Any, expectation: Any, frame: pd.DataFrame) -> list[int] | None:
    """Every row position an expectation fails (None when GX cannot say which)."""
    with quiet():
        result = batch.validate(expectation, result_format=_ROWS_FORMAT)
    found = (result.result or {}).get("unexpected_index_list")
    if _error_of(result) or not isinstance(found, list) or not found:
        return None
    rows = [int(i) for i in found if isinstance(i, int | np.integer) and int(i) in frame.index]
    return rows if len(rows) == len(found) else None


class _RowValues(dict[str, Any]):
    """A row's values for a reason template: text cut short, a missing key shown as ``?``."""

    def __missing__(self, key: str) -> str:
        return "?"


def _reason(template: str, row: pd.Series) -> str:
    values = _RowValues({str(k): short(plain(v)) for k, v in row.items()})
    try:
        return template.format_map(values)
    except (ValueError, TypeError, IndexError, AttributeError):  # a format spec that does not fit the value
        return template


def run_suite(name: str, frame: pd.DataFrame, suite_path: Path | None = None) -> list[ExpectationOutcome]:
    """Validate a frame (with a ``line`` column) against a suite; return the outcomes in suite order."""
    return validate_frame(name, frame, suite_path).outcomes


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


def _examples(result: dict[str, Any], frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index in result.get("partial_unexpected_index_list") or []:
        if not isinstance(index, int | np.integer) or index not in frame.index:
            continue
        row = frame.loc[index]
        example = {"line": plain(row.get("line"))}
        example.update({c: short(plain(row[c])) for c in columns if c in frame.columns and c != "line"})
        rows.append(example)
    return rows[:MAX_EXAMPLES]


def _describe(statement: str, success: bool, result: dict[str, Any], counts: tuple[int, int]) -> str:
    unexpected, total = counts
    if "observed_value" in result and "details" not in result:
        verdict = "passed" if success else "failed"
        return f"{statement}: {verdict} (observed {plain(result['observed_value'])})"
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
        quarantines_rows=meta.get("on_failure") == QUARANTINE_ROW,
    )
