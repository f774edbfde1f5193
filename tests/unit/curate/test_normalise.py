"""Normalising Data_Entry cells: the quirks of the real copies (ages ``058Y``/``011M``/``001D``, ``No_Finding``,
zero-padded ids, float noise in spacings) give the same typed values as clean cells, and each is counted."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.curate.normalise import (
    DATA_ENTRY_DTYPES,
    MAX_AGE_YEARS,
    NOTE_SIZE_COLUMNS_MISSING,
    normalise_data_entry,
    to_float,
    to_int,
)
from pipeline.nih import NO_FINDING

CLEAN = {
    "image_index": "00000013_005.png",
    "labels": "Mass",
    "follow_up": "5",
    "patient_id": "13",
    "age": "58",
    "sex": "M",
    "view": "PA",
    "width": "2500",
    "height": "2048",
    "spacing_x": "0.143",
    "spacing_y": "0.143",
}


def cells(*rows: dict[str, str], drop: tuple[str, ...] = ()) -> pd.DataFrame:
    return pd.DataFrame([{**CLEAN, **row} for row in rows], dtype="str").drop(columns=list(drop))


def test_a_clean_row_gives_typed_columns_and_no_notes() -> None:
    notes: dict[str, int] = {}
    frame = normalise_data_entry(cells({}), notes)
    assert {c: str(t) for c, t in frame.dtypes.items()} == DATA_ENTRY_DTYPES
    row = frame.iloc[0]
    assert (row["patient_id"], row["follow_up"], row["age_years"], row["original_width"]) == (13, 5, 58.0, 2500)
    assert row["labels"] == ["Mass"]
    assert notes == {}


@pytest.mark.parametrize(
    ("raw", "years", "note"),
    [("058Y", 58.0, "age_suffix_years"), ("58y", 58.0, "age_suffix_years"), ("011M", 11 / 12, "age_months"),
     ("001D", 1 / 365.25, "age_days"), ("058 Y", 58.0, "age_suffix_years")],
)  # fmt: skip
def test_ages_with_a_unit_are_converted_to_years(raw: str, years: float, note: str) -> None:
    notes: dict[str, int] = {}
    row = normalise_data_entry(cells({"age": raw}), notes).iloc[0]
    assert row["age_years"] == pytest.approx(years)
    assert row["age_raw"] == raw  # the cell as written is kept beside the value
    assert not row["age_flagged"]
    assert notes == {note: 1}


@pytest.mark.parametrize(
    ("raw", "note"),
    [(str(MAX_AGE_YEARS + 1), "age_impossible"), ("414Y", "age_impossible"), ("٥٨", "age_unparsable"),
     ("58 years", "age_unparsable"), ("", "age_unparsable")],
)  # fmt: skip
def test_impossible_or_unparsable_ages_are_null_and_flagged_not_guessed(raw: str, note: str) -> None:
    notes: dict[str, int] = {}
    row = normalise_data_entry(cells({"age": raw}), notes).iloc[0]
    assert pd.isna(row["age_years"])
    assert row["age_flagged"]
    assert notes[note] == 1


def test_no_finding_with_an_underscore_is_no_finding() -> None:
    notes: dict[str, int] = {}
    frame = normalise_data_entry(cells({"labels": "No_Finding"}, {"labels": "Mass| Nodule"}, {"labels": ""}), notes)
    assert frame["labels"].tolist() == [[NO_FINDING], ["Mass", "Nodule"], []]
    assert notes == {"no_finding_underscore": 1}


def test_zero_padded_and_float_spelled_ids_are_the_same_numbers() -> None:
    notes: dict[str, int] = {}
    parsed = to_int(pd.Series(["00000013", "005", "5.0", "13"]), notes, "patient_id")
    assert parsed.tolist() == [13, 5, 5, 13]
    assert notes == {"patient_id_zero_padded": 2, "patient_id_written_as_float": 1}


@pytest.mark.parametrize("cell", ["-1", "1.5", "1e3", "13a", "١٣", ""])
def test_an_id_that_is_not_a_whole_ascii_number_is_null_and_counted(cell: str) -> None:
    notes: dict[str, int] = {}
    assert to_int(pd.Series([cell]), notes, "follow_up").isna().all()
    assert notes == {"unparsable_follow_up": 1}


def test_float_noise_in_spacings_is_rounded_away() -> None:
    notes: dict[str, int] = {}
    frame = normalise_data_entry(
        cells({"spacing_x": "0.14300000000000002"}, {"spacing_y": "0.1390000000000001"}), notes
    )
    assert frame["pixel_spacing_x"].tolist() == [0.143, 0.143]
    assert frame["pixel_spacing_y"].tolist() == [0.143, 0.139]
    assert notes == {"spacing_rounded": 2}


def test_non_finite_or_empty_numbers_are_null() -> None:
    notes: dict[str, int] = {}
    values = to_float(pd.Series(["1.5", "inf", "NaN", "", "x"]), notes, "x")
    assert values.iloc[0] == 1.5
    assert values.iloc[1:].isna().all()
    assert notes == {"unparsable_x": 4}


def test_a_variant_without_size_columns_gives_typed_nulls_and_says_so() -> None:
    notes: dict[str, int] = {}
    frame = normalise_data_entry(cells({}, drop=("width", "height", "spacing_x", "spacing_y")), notes)
    assert {c: str(t) for c, t in frame.dtypes.items()} == DATA_ENTRY_DTYPES
    assert frame[["original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y"]].isna().all().all()
    assert notes == {NOTE_SIZE_COLUMNS_MISSING: 1}
