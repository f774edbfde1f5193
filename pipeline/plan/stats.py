"""Statistics per split and the checks run on a release's metadata after splits are assigned."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from pipeline import nih
from pipeline.curate.outcomes import ValidationReport
from pipeline.curate.suites import run_suite
from pipeline.plan.split import SPLITS

log = logging.getLogger(__name__)


def _age_summary(ages: pd.Series) -> dict[str, float | None]:
    values = pd.to_numeric(ages, errors="coerce").dropna()
    if values.empty:
        return {"mean": None, "median": None, "min": None, "max": None, "missing": int(ages.isna().sum())}
    return {
        "mean": round(float(values.mean()), 2),
        "median": round(float(values.median()), 2),
        "min": round(float(values.min()), 2),
        "max": round(float(values.max()), 2),
        "missing": int(len(ages) - len(values)),
    }


def _prevalence(labels: pd.Series) -> dict[str, float]:
    total = max(len(labels), 1)
    counts = dict.fromkeys(nih.LABELS, 0)
    for row in labels:
        for label in row:
            counts[str(label)] = counts.get(str(label), 0) + 1
    return {label: round(count / total, 4) for label, count in counts.items()}


STAT_COLUMNS = ["split", "patient_id", "labels", "sex", "view_position", "age_years"]


def _split_stats(part: pd.DataFrame) -> dict[str, Any]:
    return {
        "images": len(part),
        "patients": int(part["patient_id"].nunique()),
        "label_prevalence": _prevalence(part["labels"]),
        "sex": {str(k): int(v) for k, v in part["sex"].value_counts().sort_index().items()},
        "view_position": {str(k): int(v) for k, v in part["view_position"].value_counts().sort_index().items()},
        "age_years": _age_summary(part["age_years"]),
    }


def split_statistics(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Images, patients, label prevalence, sex, view and age per split (and ``all``): one split's rows of the
    columns it needs at a time, not a copy of every split's whole rows at once."""
    slim = frame[STAT_COLUMNS]
    stats = {name: _split_stats(slim[slim["split"] == name]) for name in SPLITS}
    return stats | {"all": _split_stats(slim)}


def check_release_metadata(frame: pd.DataFrame) -> ValidationReport:
    """Run the ``release_metadata`` suite (no patient in two splits, unique images) on the assigned rows."""
    derived = pd.DataFrame(
        {
            "line": range(1, len(frame) + 1),
            "image_index": frame["image_index"].to_numpy(),
            "patient_id": frame["patient_id"].to_numpy(),
            "split": frame["split"].to_numpy(),
            "patient_split_count": frame.groupby("patient_id")["split"].transform("nunique").to_numpy(),
        }
    )
    report = ValidationReport(outcomes=run_suite("release_metadata", derived), variants={})
    log.info("release metadata checks: %s", "ok" if report.ok else "FAILED")
    return report
