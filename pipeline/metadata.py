"""Load the NIH ChestX-ray14 metadata files into normalised pandas frames.

Every copy of the metadata that circulates is recognised by its header and reported as a variant:

* ``data_entry/bracketed-trailing-comma``: ``...,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],``
  (the original 2017 file: the brackets hold commas and a trailing comma adds an empty column);
* ``data_entry/bracketed``: the same without the trailing comma (the v2020 file);
* ``data_entry/explicit``: ``...,OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,...``
  (also Kaggle's ``sample_labels.csv``);
* ``data_entry/underscore``: ``Image_Index,Finding_Labels,Follow_Up_#,...``, size/spacing columns optional;
* ``bbox/nih``: ``Image Index,Finding Label,Bbox [x,y,w,h],,,``; ``bbox/explicit``: ``...,x,y,w,h``.

Cells are read as text and converted explicitly: a cell that cannot be converted becomes null and the row is
kept, so validation can name the row. Only unreadable bytes and unknown headers are load errors. Quirks met
while loading are counted in ``LoadedTable.notes`` (only non-zero counts are kept).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.errors import BadDataError
from pipeline.nih import NO_FINDING

logger = logging.getLogger(__name__)

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
BBOX_COLUMNS: tuple[str, ...] = ("image_index", "label", "x", "y", "w", "h")
MAX_AGE_YEARS = 120
SPACING_DECIMALS = 6
#: Note set when a Data_Entry variant has no original size/spacing columns (they are null then).
NOTE_SIZE_COLUMNS_MISSING = "size_columns_missing"

LABEL_ALIASES: dict[str, str] = {"No_Finding": NO_FINDING}
BBOX_LABEL_ALIASES: dict[str, str] = {"Infiltrate": "Infiltration"}
_AGE_UNITS: dict[str, float] = {"": 1.0, "Y": 1.0, "M": 12.0, "D": 365.25}
_AGE_RE = r"^(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[YMD]?)$"
_AGE_UNIT_NOTES: dict[str, str] = {"Y": "age_suffix_years", "M": "age_months", "D": "age_days"}
_SIZE_KEYS = ("width", "height", "spacing_x", "spacing_y")


class UnknownHeaderError(BadDataError, ValueError):
    """The header of a metadata file matches no known variant."""


class UnreadableFileError(BadDataError, ValueError):
    """A metadata file is empty, binary or not UTF-8 text."""


@dataclass(frozen=True)
class LoadedTable:
    """A metadata file loaded into a normalised frame.

    ``lines`` holds the physical line number (1-based, header is line 1) of each row of ``frame``.
    """

    frame: pd.DataFrame
    variant: str
    source: str
    notes: dict[str, int] = field(default_factory=dict)
    lines: tuple[int, ...] = ()

    def line_numbers(self) -> list[int]:
        """Return the source line number of each row (row ``i`` is on line ``i + 2`` when unknown)."""
        if len(self.lines) == len(self.frame):
            return list(self.lines)
        return list(range(2, len(self.frame) + 2))


@dataclass(frozen=True)
class _Variant:
    name: str
    tokens: Mapping[str, tuple[str, ...]]
    required: frozenset[str]
    example: str
    trailing: bool | None = None  # True: needs trailing empty columns, False: must not have them


def _tokens(names: Mapping[str, str | tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {k.lower(): (v,) if isinstance(v, str) else v for k, v in names.items()}


_CORE_KEYS = frozenset({"image_index", "labels", "follow_up", "patient_id", "age", "sex", "view"})
_SPACED = {
    "Image Index": "image_index", "Finding Labels": "labels", "Follow-up #": "follow_up",
    "Patient ID": "patient_id", "Patient Age": "age", "Patient Gender": "sex", "Patient Sex": "sex",
    "View Position": "view",
}  # fmt: skip
_UNDERSCORE = {k.replace(" ", "_").replace("-up", "_Up"): v for k, v in _SPACED.items()}
_BRACKETED: dict[str, tuple[str, ...]] = {
    "OriginalImage[Width,Height]": ("width", "height"),
    "OriginalImagePixelSpacing[x,y]": ("spacing_x", "spacing_y"),
}
_EXPLICIT = {
    "OriginalImageWidth": "width", "OriginalImageHeight": "height",
    "OriginalImagePixelSpacing_x": "spacing_x", "OriginalImagePixelSpacing_y": "spacing_y",
}  # fmt: skip
_CORE_EXAMPLE = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"
_ALL_KEYS = _CORE_KEYS | set(_SIZE_KEYS)

DATA_ENTRY_VARIANTS: tuple[_Variant, ...] = (
    _Variant("data_entry/bracketed-trailing-comma", _tokens({**_SPACED, **_BRACKETED}), _ALL_KEYS,
             _CORE_EXAMPLE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],", trailing=True),
    _Variant("data_entry/bracketed", _tokens({**_SPACED, **_BRACKETED}), _ALL_KEYS,
             _CORE_EXAMPLE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]", trailing=False),
    _Variant("data_entry/explicit", _tokens({**_SPACED, **_EXPLICIT}), _ALL_KEYS,
             _CORE_EXAMPLE + "," + ",".join(_EXPLICIT)),
    _Variant("data_entry/underscore", _tokens({**_UNDERSCORE, **_EXPLICIT, **_BRACKETED}), _CORE_KEYS,
             _CORE_EXAMPLE.replace(" ", "_").replace("-up", "_Up") + "[,size and spacing columns]"),
)  # fmt: skip
_BOX_KEYS = frozenset({"image_index", "label", "x", "y", "w", "h"})
BBOX_VARIANTS: tuple[_Variant, ...] = (
    _Variant("bbox/nih", _tokens({"Image Index": "image_index", "Finding Label": "label",
                                  "Bbox [x,y,w,h]": ("x", "y", "w", "h")}),
             _BOX_KEYS, "Image Index,Finding Label,Bbox [x,y,w,h],,,"),
    _Variant("bbox/explicit", _tokens({"Image Index": "image_index", "Finding Label": "label", "x": "x",
                                       "y": "y", "w": "w", "h": "h"}),
             _BOX_KEYS, "Image Index,Finding Label,x,y,w,h"),
)  # fmt: skip


@dataclass
class _RawTable:
    header: list[str]
    rows: list[list[str]]
    lines: list[int]


def decode_text(data: bytes, source: str) -> str:
    """Decode metadata bytes as UTF-8 (a BOM is dropped).

    Raises:
        UnreadableFileError: if the bytes are empty, binary or not UTF-8.
    """
    if b"\x00" in data[:65536]:
        raise UnreadableFileError(f"{source}: binary data (NUL bytes), not a text metadata file; "
                                  "pass the CSV/TXT file itself, not an archive or an image")  # fmt: skip
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                  f"{exc.start}); re-export the file as UTF-8") from exc  # fmt: skip
    if not text.strip():
        raise UnreadableFileError(f"{source}: the file is empty; download it again")
    return text


def _read_csv(data: bytes, source: str) -> _RawTable:
    reader = csv.reader(io.StringIO(decode_text(data, source), newline=""))
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not "".join(cells).strip():
                continue
            if header is None:
                header = cells
            else:
                rows.append(cells)
                lines.append(reader.line_num)
    except csv.Error as exc:
        message = f"{source}: not a readable CSV file near line {reader.line_num}: {exc}"
        raise UnreadableFileError(message) from exc
    assert header is not None  # decode_text rejects blank files
    return _RawTable(header, rows, lines)


def split_header(cells: list[str]) -> list[str]:
    """Rejoin header cells that a naive comma split broke inside brackets (``OriginalImage[Width,Height]``).

    Surrounding whitespace is stripped from each column name.
    """
    tokens: list[str] = []
    depth = 0
    for cell in cells:
        if depth > 0:
            tokens[-1] += "," + cell
        else:
            tokens.append(cell)
        depth += cell.count("[") - cell.count("]")
    return [token.strip() for token in tokens]


def _match(tokens: list[str], trailing: int, variant: _Variant) -> list[str] | None:
    if variant.trailing is not None and variant.trailing != (trailing > 0):
        return None
    keys: list[str] = []
    for token in tokens:
        mapped = variant.tokens.get(token.lower())
        if mapped is None:
            return None
        keys.extend(mapped)
    if len(set(keys)) != len(keys) or not variant.required <= set(keys):
        return None
    return keys


_Match = tuple[_Variant, list[str], int]


def _recognise(header: list[str], source: str, variants: tuple[_Variant, ...]) -> _Match:
    tokens = split_header(header)
    trailing = 0
    while tokens and not tokens[-1]:
        tokens.pop()
        trailing += 1
    for variant in variants:
        keys = _match(tokens, trailing, variant)
        if keys is not None:
            return variant, keys, trailing
    known = "\n".join(f"  {v.name}: {v.example}" for v in variants)
    raise UnknownHeaderError(f"{source}: unknown header; columns found: {tokens} (plus {trailing} empty); "
                             f"{_closest(tokens, trailing, variants)}; known variants:\n{known}")  # fmt: skip


def _closest(tokens: list[str], trailing: int, variants: tuple[_Variant, ...]) -> str:
    def unknown(variant: _Variant) -> list[str]:
        return [token for token in tokens if token.lower() not in variant.tokens]

    def distance(variant: _Variant) -> tuple[int, bool]:
        return len(unknown(variant)), variant.trailing is not None and variant.trailing != (trailing > 0)

    best = min(variants, key=distance)
    found = {key for token in tokens for key in best.tokens.get(token.lower(), ())}
    missing = [" or ".join(repr(t) for t, keys in best.tokens.items() if key in keys)
               for key in sorted(best.required - found)]  # fmt: skip
    found_text = f"unexpected columns {unknown(best)}, missing columns [{', '.join(missing)}]"
    return f"closest variant {best.name}: {found_text}"


def _cells_frame(raw: _RawTable, keys: list[str], notes: dict[str, int]) -> pd.DataFrame:
    width = len(keys)
    fixed: list[list[str]] = []
    for cells in raw.rows:
        if len(cells) == width:
            fixed.append(cells)
            continue
        if len(cells) > width and "".join(cells[width:]).strip():
            notes["rows_with_extra_cells"] = notes.get("rows_with_extra_cells", 0) + 1
        elif len(cells) < width:
            notes["rows_short"] = notes.get("rows_short", 0) + 1
        fixed.append((cells + [""] * width)[:width])
    frame = pd.DataFrame(fixed or None, columns=keys, dtype="str")
    for key in keys:
        frame[key] = frame[key].str.strip()
    return frame


def _count(notes: dict[str, int], key: str, value: int | np.integer) -> None:
    if int(value):
        notes[key] = notes.get(key, 0) + int(value)


def _to_int(cells: pd.Series, notes: dict[str, int], name: str) -> pd.Series:
    ok = cells.str.fullmatch(r"\d+").fillna(False).astype(bool)
    _count(notes, f"unparsable_{name}", (~ok).sum())
    _count(notes, f"{name}_zero_padded", (ok & cells.str.match(r"0\d")).sum())
    return pd.to_numeric(cells.where(ok), errors="coerce").astype("Int64")


def _to_float(cells: pd.Series, notes: dict[str, int], name: str) -> pd.Series:
    values = pd.to_numeric(cells.where(cells != ""), errors="coerce").astype("float64")
    values = values.where(np.isfinite(values))
    _count(notes, f"unparsable_{name}", values.isna().sum())
    return values


def _ages(raw: pd.Series, notes: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    codes, uniques = pd.factorize(raw)  # a few hundred distinct ages: parse each once
    parts = pd.Series(uniques, dtype="str").str.upper().str.extract(_AGE_RE)
    unique_units = parts["unit"].fillna("")
    per_unique = pd.to_numeric(parts["num"], errors="coerce") / unique_units.map(_AGE_UNITS).astype("float64")
    units = unique_units.to_numpy()[codes]
    years = pd.Series(per_unique.to_numpy()[codes], index=raw.index)
    for unit, note in _AGE_UNIT_NOTES.items():
        _count(notes, note, (units == unit).sum())
    impossible = years > MAX_AGE_YEARS
    _count(notes, "age_impossible", impossible.sum())
    _count(notes, "age_unparsable", years.isna().sum())
    flagged = (impossible | years.isna()).astype(bool)
    return years.where(~flagged).astype("Float64"), flagged


def _labels(cells: pd.Series, notes: dict[str, int]) -> pd.Series:
    parsed: dict[str, list[str]] = {}  # a few hundred distinct label strings: parse each once
    for cell, count in cells.value_counts().items():
        names = [name.strip() for name in str(cell).split("|")] if cell else []
        parsed[str(cell)] = [LABEL_ALIASES.get(name, name) for name in names]
        _count(notes, "no_finding_underscore", sum(name in LABEL_ALIASES for name in names) * count)
    return pd.Series([list(parsed[cell]) for cell in cells], index=cells.index, dtype="object")


def _spacing(cells: pd.Series, notes: dict[str, int], name: str) -> pd.Series:
    values = _to_float(cells, notes, name)
    rounded = values.round(SPACING_DECIMALS)
    _count(notes, "spacing_rounded", ((rounded != values) & values.notna()).sum())
    return rounded.astype("Float64")


def _size_columns(cells: pd.DataFrame, notes: dict[str, int]) -> dict[str, pd.Series]:
    if not set(_SIZE_KEYS) <= set(cells.columns):
        notes[NOTE_SIZE_COLUMNS_MISSING] = 1
        empty = pd.Series(pd.NA, index=cells.index)
        ints = {name: empty.astype("Int64") for name in ("original_width", "original_height")}
        return ints | {name: empty.astype("Float64") for name in ("pixel_spacing_x", "pixel_spacing_y")}
    return {
        "original_width": _to_int(cells["width"], notes, "original_width"),
        "original_height": _to_int(cells["height"], notes, "original_height"),
        "pixel_spacing_x": _spacing(cells["spacing_x"], notes, "pixel_spacing_x"),
        "pixel_spacing_y": _spacing(cells["spacing_y"], notes, "pixel_spacing_y"),
    }


def _normalise_data_entry(cells: pd.DataFrame, notes: dict[str, int]) -> pd.DataFrame:
    age_years, age_flagged = _ages(cells["age"], notes)
    columns: dict[str, pd.Series] = {
        "image_index": cells["image_index"],
        "patient_id": _to_int(cells["patient_id"], notes, "patient_id"),
        "follow_up": _to_int(cells["follow_up"], notes, "follow_up"),
        "age_years": age_years,
        "age_raw": cells["age"],
        "age_flagged": age_flagged,
        "sex": cells["sex"],
        "view_position": cells["view"],
        "labels": _labels(cells["labels"], notes),
        **_size_columns(cells, notes),
    }
    return pd.DataFrame(columns).astype(DATA_ENTRY_DTYPES).reset_index(drop=True)


def load_data_entry(data: bytes, source: str) -> LoadedTable:
    """Load a Data_Entry CSV (any known variant) into the normalised frame.

    Args:
        data: The file's bytes.
        source: File name or URI, used in messages.

    Returns:
        The normalised table (columns ``DATA_ENTRY_COLUMNS``), its variant and quirk counts.

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
        UnknownHeaderError: if the header matches no known Data_Entry variant.
    """
    return _data_entry_table(_read_csv(data, source), source)


def _data_entry_table(raw: _RawTable, source: str) -> LoadedTable:
    variant, keys, trailing = _recognise(raw.header, source, DATA_ENTRY_VARIANTS)
    notes: dict[str, int] = {}
    _count(notes, "trailing_empty_columns", trailing)
    _count(notes, "patient_sex_header", any(t.lower() == "patient sex" for t in split_header(raw.header)))
    frame = _normalise_data_entry(_cells_frame(raw, keys, notes), notes)
    logger.info("%s: %d Data_Entry rows, variant %s, notes %s", source, len(frame), variant.name, notes)
    return LoadedTable(frame, variant.name, source, notes, tuple(raw.lines))


def load_bboxes(data: bytes, source: str) -> LoadedTable:
    """Load the bounding-box list (``BBox_List_2017.csv``) into columns ``BBOX_COLUMNS``.

    Labels are canonical (``Infiltrate`` -> ``Infiltration``); coordinates are float64 (null if unparsable).

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
        UnknownHeaderError: if the header matches no known bounding-box variant.
    """
    return _bbox_table(_read_csv(data, source), source)


def _bbox_table(raw: _RawTable, source: str) -> LoadedTable:
    variant, keys, _ = _recognise(raw.header, source, BBOX_VARIANTS)
    notes: dict[str, int] = {}
    cells = _cells_frame(raw, keys, notes)
    _count(notes, "infiltrate_renamed", cells["label"].isin(list(BBOX_LABEL_ALIASES)).sum())
    columns: dict[str, pd.Series] = {
        "image_index": cells["image_index"],
        "label": cells["label"].replace(BBOX_LABEL_ALIASES),
        **{axis: _to_float(cells[axis], notes, axis) for axis in ("x", "y", "w", "h")},
    }
    frame = pd.DataFrame(columns).reset_index(drop=True)
    logger.info("%s: %d boxes, variant %s, notes %s", source, len(frame), variant.name, notes)
    return LoadedTable(frame, variant.name, source, notes, tuple(raw.lines))


def load_any_table(data: bytes, source: str) -> LoadedTable:
    """Load a Data_Entry or bounding-box CSV, whichever its header says it is.

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
        UnknownHeaderError: listing every known variant, if the header matches none.
    """
    raw = _read_csv(data, source)
    variant, _, _ = _recognise(raw.header, source, DATA_ENTRY_VARIANTS + BBOX_VARIANTS)
    if variant in BBOX_VARIANTS:
        return _bbox_table(raw, source)
    return _data_entry_table(raw, source)


def split_list_entries(data: bytes, source: str) -> list[tuple[int, str]]:
    """Return ``(line number, name)`` for each non-blank line of a split list, whitespace stripped.

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
    """
    text = decode_text(data, source)
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def load_split_list(data: bytes, source: str) -> list[str]:
    """Load a split list (``train_val_list.txt`` / ``test_list.txt``): one image name a line.

    CRLF line ends, blank lines and surrounding whitespace are tolerated.

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
    """
    return [name for _, name in split_list_entries(data, source)]
