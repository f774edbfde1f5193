"""Per-split statistics and the release-metadata expectation that no patient is in two splits."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.curate.outcomes import raise_if_blocking
from pipeline.errors import BlockingValidationError
from pipeline.plan import stats


def _frame(splits: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_index": [f"0000000{i}_000.png" for i in range(len(splits))],
            "patient_id": [1, 1, 2, 3][: len(splits)],
            "split": splits,
            "labels": [["No Finding"], ["Mass"], ["Mass", "Nodule"], ["Effusion"]][: len(splits)],
            "sex": ["M", "M", "F", "F"][: len(splits)],
            "view_position": ["PA", "AP", "PA", "PA"][: len(splits)],
            "age_years": [50.0, None, 30.0, 41.0][: len(splits)],
        }
    )


def test_statistics_count_images_patients_labels_and_ages_per_split() -> None:
    got = stats.split_statistics(_frame(["train", "train", "val", "test"]))
    assert (got["train"]["images"], got["train"]["patients"]) == (2, 1)
    assert got["train"]["label_prevalence"]["Mass"] == 0.5
    assert got["all"]["sex"] == {"F": 2, "M": 2}
    assert got["all"]["age_years"]["missing"] == 1
    assert got["all"]["age_years"]["median"] == 41.0


def test_release_check_blocks_a_patient_in_two_splits_and_names_it() -> None:
    report = stats.check_release_metadata(_frame(["train", "test", "val", "val"]))
    assert not report.ok
    (failure,) = report.blocking_failures
    assert failure.check == "no_patient_leakage"
    assert failure.unexpected_count == 2
    with pytest.raises(BlockingValidationError, match="no patient has images in two splits"):
        raise_if_blocking(report)


def test_release_check_passes_a_patient_level_split() -> None:
    assert stats.check_release_metadata(_frame(["train", "train", "val", "test"])).ok
