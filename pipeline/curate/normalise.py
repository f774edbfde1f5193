"""Turn the text cells of a Data_Entry file into the normalised, typed columns.

Cells are converted explicitly: a cell that cannot be converted becomes null (the row is kept, so validation
can name it) and every quirk met is counted in ``notes`` (only non-zero counts are kept): zero-padded numbers,
ages written ``058Y``/``011M``/``001D`` or impossible, ``No_Finding``, float noise in pixel spacings...
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.nih import NO_FINDING

DATA_ENTRY_DTYPES: dict[str, str] = {
    "image_index": "str",
    "patient_id": "Int64",
    "follow_up": "Int64",
    "age_years": "Float64",
    "age_raw": "str",
    "age_flagged": "bool",
    "sex": "str",
    "view_position": "str",
    "labels": "object",
    "original_width": "Int64",
    "original_height": "Int64",
    "pixel_spacing_x": "Float64",
    "pixel_spacing_y": "Float64",
}
DATA_ENTRY_COLUMNS: tuple[str, ...] = tuple(DATA_ENTRY_DTYPES)

MAX_AGE_YEARS = 120
SPACING_DECIMALS = 6
#: Note set when a Data_Entry variant has no original size/spacing columns (they are null then).
NOTE_SIZE_COLUMNS_MISSING = "size_columns_missing"

LABEL_ALIASES: dict[str, str] = {"No_Finding": NO_FINDING}
_AGE_UNITS: dict[str, float] = {"": 1.0, "Y": 1.0, "M": 12.0, "D": 365.25}
_AGE_RE = r"^(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[YMD]?)$"  # ASCII digits: ``\d`` takes any Unicode digit
_AGE_UNIT_NOTES: dict[str, str] = {"Y": "age_suffix_years", "M": "age_months", "D": "age_days"}
SIZE_KEYS = ("width", "height", "spacing_x", "spacing_y")


def count_note(notes: dict[str, int], key: str, value: int | np.integer) -> None:
    """Add ``value`` to ``notes[key]``; zero counts are not recorded."""
    if int(value):
        notes[key] = notes.get(key, 0) + int(value)


def to_int(cells: pd.Series, notes: dict[str, int], name: str) -> pd.Series:
    """Parse non-negative integer cells into Int64 (null when unparsable).

    Zero padding (``005``) and a float spelling (``5.0``, as a spreadsheet or pandas export writes it) are
    accepted and counted.
    """
    ok = cells.str.fullmatch(r"[0-9]+(?:\.0*)?").fillna(False).astype(bool)  # ASCII only, as ids must be
    count_note(notes, f"unparsable_{name}", (~ok).sum())
    count_note(notes, f"{name}_zero_padded", (ok & cells.str.match(r"0[0-9]")).sum())
    count_note(notes, f"{name}_written_as_float", (ok & cells.str.contains(".", regex=False)).sum())
    digits = cells.where(ok).str.replace(r"\.0*$", "", regex=True)
    return pd.to_numeric(digits, errors="coerce").astype("Int64")


def to_float(cells: pd.Series, notes: dict[str, int], name: str) -> pd.Series:
    """Parse cells into float64 (null when empty, unparsable or not finite)."""
    values = pd.to_numeric(cells.where(cells != ""), errors="coerce").astype("float64")
    values = values.where(np.isfinite(values))
    count_note(notes, f"unparsable_{name}", values.isna().sum())
    return values


def _ages(raw: pd.Series, notes: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    codes, uniques = pd.factorize(raw)  # a few hundred distinct ages: parse each once
    parts = pd.Series(uniques, dtype="str").str.upper().str.extract(_AGE_RE)
    unique_units = parts["unit"].fillna("")
    per_unique = pd.to_numeric(parts["num"], errors="coerce") / unique_units.map(_AGE_UNITS).astype("float64")
    units = unique_units.to_numpy()[codes]
    years = pd.Series(per_unique.to_numpy()[codes], index=raw.index)
    for unit, note in _AGE_UNIT_NOTES.items():
        count_note(notes, note, (units == unit).sum())
    impossible = years > MAX_AGE_YEARS
    count_note(notes, "age_impossible", impossible.sum())
    count_note(notes, "age_unparsable", years.isna().sum())
    flagged = (impossible | years.isna()).astype(bool)
    return years.where(~flagged).astype("Float64"), flagged


def _labels(cells: pd.Series, notes: dict[str, int]) -> pd.Series:
    parsed: dict[str, list[str]] = {}  # a few hundred distinct label strings: parse each once
    for cell, count in cells.value_counts().items():
        names = [name.strip() for name in str(cell).split("|")] if cell else []
        parsed[str(cell)] = [LABEL_ALIASES.get(name, name) for name in names]
        count_note(notes, "no_finding_underscore", sum(name in LABEL_ALIASES for name in names) * count)
    return pd.Series([list(parsed[cell]) for cell in cells], index=cells.index, dtype="object")


def _spacing(cells: pd.Series, notes: dict[str, int], name: str) -> pd.Series:
    values = to_float(cells, notes, name)
    rounded = values.round(SPACING_DECIMALS)
    count_note(notes, "spacing_rounded", ((rounded != values) & values.notna()).sum())
    return rounded.astype("Float64")


def _size_columns(cells: pd.DataFrame, notes: dict[str, int]) -> dict[str, pd.Series]:
    if not set(SIZE_KEYS) <= set(cells.columns):
        notes[NOTE_SIZE_COLUMNS_MISSING] = 1
        empty = pd.Series(pd.NA, index=cells.index)
        ints = {name: empty.astype("Int64") for name in ("original_width", "original_height")}
        return ints | {name: empty.astype("Float64") for name in ("pixel_spacing_x", "pixel_spacing_y")}
    return {
        "original_width": to_int(cells["width"], notes, "original_width"),
        "original_height": to_int(cells["height"], notes, "original_height"),
        "pixel_spacing_x": _spacing(cells["spacing_x"], notes, "pixel_spacing_x"),
        "pixel_spacing_y": _spacing(cells["spacing_y"], notes, "pixel_spacing_y"),
    }


def normalise_data_entry(cells: pd.DataFrame, notes: dict[str, int]) -> pd.DataFrame:
    """Build the normalised table (``DATA_ENTRY_COLUMNS``) from the cells keyed by column role.

    Args:
        cells: Stripped text cells, columns ``image_index``, ``labels``, ``follow_up``, ``patient_id``, ``age``,
            ``sex``, ``view`` and optionally ``width``, ``height``, ``spacing_x``, ``spacing_y``.
        notes: Quirk counts, updated in place.
    """
    age_years, age_flagged = _ages(cells["age"], notes)
    columns: dict[str, pd.Series] = {
        "image_index": cells["image_index"],
        "patient_id": to_int(cells["patient_id"], notes, "patient_id"),
        "follow_up": to_int(cells["follow_up"], notes, "follow_up"),
        "age_years": age_years,
        "age_raw": cells["age"],
        "age_flagged": age_flagged,
        "sex": cells["sex"],
        "view_position": cells["view"],
        "labels": _labels(cells["labels"], notes),
        **_size_columns(cells, notes),
    }
    return pd.DataFrame(columns).astype(DATA_ENTRY_DTYPES).reset_index(drop=True)
