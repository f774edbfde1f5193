"""What a validation found, in plain Python: one outcome per expectation, one run per suite, one report per run.

:class:`ExpectationOutcome` is one expectation's result (severity, column, counts, a few example rows, a
one-line rendering); :class:`SuiteRun` is one suite on one frame, with GX's own result (for Data Docs) and the
rows it quarantines; :class:`ValidationReport` gathers the runs of every file with the variant and loader
quirks of each, and renders them as the text summary and the JSON of ``validation/``. A report with a failed
blocking expectation stops a run (:func:`raise_if_blocking`); quarantined rows never do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.curate.quarantine import ROW_DEFECT_COLUMNS, empty_row_defects, row_defect_text
from pipeline.curate.reading import short
from pipeline.errors import BlockingValidationError

__all__ = [
    "ROWS_IN_JSON",
    "ROWS_LISTED",
    "ExpectationOutcome",
    "Severity",
    "SuiteRun",
    "ValidationReport",
    "plain",
    "raise_if_blocking",
]

Severity = Literal["blocking", "warning"]
#: How many quarantined rows the text summary lists, and the JSON report holds (the count is always complete).
ROWS_LISTED, ROWS_IN_JSON = 20, 1000


def plain(value: Any) -> Any:
    """Turn numpy scalars/arrays, NaN and pandas NA into plain JSON-able Python values."""
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


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
    quarantines_rows: bool = False

    def render(self) -> str:
        """Return one line naming severity, suite, expectation, column, count and a few example rows."""
        where = f" on {self.column}" if self.column else ""
        head = f"[{self.severity}] {self.suite}.{self.check or self.expectation} ({self.expectation}{where})"
        shown = "; ".join(", ".join(f"{k}={short(v)!r}" for k, v in row.items()) for row in self.examples[:3])
        action = "; those rows are quarantined" if self.quarantines_rows and not self.success else ""
        return f"{head}: {self.description}{action}" + (f" | e.g. {shown}" if shown else "")


@dataclass(frozen=True)
class SuiteRun:
    """One suite run on one frame: the outcomes, and GX's own result object (for Data Docs)."""

    suite: str
    outcomes: list[ExpectationOutcome]
    gx_result: Any  # great_expectations ExpectationSuiteValidationResult
    #: Rows failed by ``quarantine_row`` expectations: the validated frame's rows (index = row position) with a
    #: ``reason`` column (every failed check's reason, ``; ``-joined); None when there are none. After
    #: :mod:`pipeline.curate.validate` is done with a run, they are ``ROW_DEFECT_COLUMNS``.
    defects: pd.DataFrame | None = None


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
                {k: plain(v) for k, v in row.items()} for row in defects.head(ROWS_IN_JSON).to_dict("records")
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


def raise_if_blocking(report: ValidationReport) -> None:
    """Stop a run when any blocking expectation failed.

    Raises:
        BlockingValidationError: listing suite, expectation, column, count and examples of each failure; its
            ``report`` is ``report``.
    """
    if report.ok:
        return
    failures = "\n".join("  " + o.render() for o in report.blocking_failures)
    message = f"{len(report.blocking_failures)} blocking expectation(s) failed:\n{failures}"
    raise BlockingValidationError(message, report)
