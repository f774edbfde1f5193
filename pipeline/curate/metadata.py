"""Load the NIH ChestX-ray14 metadata files into normalised pandas frames.

Every copy of the metadata that circulates is recognised by its header and reported as a variant:

* ``data_entry/bracketed-trailing-comma``: ``...,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],``
  (the original 2017 file: the brackets hold commas and a trailing comma adds an empty column);
* ``data_entry/bracketed``: the same without the trailing comma (the v2020 file);
* ``data_entry/explicit``: ``...,OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,...``
  (also Kaggle's ``sample_labels.csv``);
* ``data_entry/no-size``: the seven core columns only (size and spacing are null then);
* ``data_entry/underscore``: ``Image_Index,Finding_Labels,Follow_Up_#,...``, size/spacing columns optional;
* ``bbox/nih``: ``Image Index,Finding Label,Bbox [x,y,w,h],,,``; ``bbox/explicit``: ``...,x,y,w,h``.

Column order is free and names match in any case. A header that matches no variant exactly is tried again
with names compared without spaces, ``_``, ``-`` and ``#`` (``Follow_up``, ``FINDING LABELS``; note
``header_spelled_differently``). Columns pandas calls ``Unnamed: N`` count as empty; a leading unnamed
column is a row number written by a spreadsheet or ``DataFrame.to_csv`` and is dropped.

Cells are read as text and converted explicitly (``pipeline.curate.normalise``): a cell that cannot be converted
becomes null and the row is kept, so validation can name the row. Only unreadable bytes and unknown headers
are load errors. Quirks met while loading are counted in ``LoadedTable.notes`` (only non-zero counts are kept).

Size limits: every metadata file is checked against ``MAX_FILE_BYTES`` (per kind, far above NIH's own files)
before a byte of it is read (:func:`check_size`), so a wrong or hostile file costs no memory. Messages that
list columns or values show the first ``MAX_LISTED`` of them, then "and N more" (:func:`brief`), each value cut
at ``MAX_VALUE_CHARS`` (:func:`short`).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.curate.normalise import (
    DATA_ENTRY_COLUMNS,
    DATA_ENTRY_DTYPES,
    LABEL_ALIASES,
    NOTE_SIZE_COLUMNS_MISSING,
    SIZE_KEYS,
    count_note,
    normalise_data_entry,
    to_float,
)
from pipeline.errors import BadDataError

__all__ = [
    "BBOX_COLUMNS",
    "BBOX_VARIANTS",
    "DATA_ENTRY_COLUMNS",
    "DATA_ENTRY_DTYPES",
    "DATA_ENTRY_VARIANTS",
    "LABEL_ALIASES",
    "MAX_FILE_BYTES",
    "NOTE_SIZE_COLUMNS_MISSING",
    "FileTooLargeError",
    "LoadedTable",
    "UnknownHeaderError",
    "UnreadableFileError",
    "brief",
    "check_size",
    "decode_text",
    "load_any_table",
    "load_bboxes",
    "load_data_entry",
    "load_split_list",
    "short",
    "split_header",
    "split_list_entries",
]

logger = logging.getLogger(__name__)

_MIB = 1 << 20
#: Largest metadata file read, per kind (bytes). NIH's files: Data_Entry_2017[_v2020].csv about 8 MB, the box
#: list about 90 KB, train_val_list.txt about 1.5 MB, test_list.txt about 0.4 MB, an md5 list under 1 KB.
#: A file over its limit is refused before it is read (it is not the file it is named after).
MAX_FILE_BYTES: dict[str, int] = {
    "data_entry": 128 * _MIB,
    "bbox": 16 * _MIB,
    "split_list": 32 * _MIB,
    "checksums": 16 * _MIB,
}
_KIND_TEXT: dict[str, tuple[str, str]] = {
    "data_entry": ("Data_Entry file", "about 8 MB"),
    "bbox": ("bounding-box list", "about 90 KB"),
    "split_list": ("split list", "at most 1.5 MB"),
    "checksums": ("md5 list", "under 1 KB"),
}
#: How many columns or values a message lists before "and N more"; how long a value shown in a message may be.
MAX_LISTED = 10
MAX_VALUE_CHARS = 80

BBOX_COLUMNS: tuple[str, ...] = ("image_index", "label", "x", "y", "w", "h")
BBOX_LABEL_ALIASES: dict[str, str] = {"Infiltrate": "Infiltration"}


class UnknownHeaderError(BadDataError, ValueError):
    """The header of a metadata file matches no known variant."""


class UnreadableFileError(BadDataError, ValueError):
    """A metadata file is empty, binary or not UTF-8 text."""


class FileTooLargeError(UnreadableFileError):
    """A metadata file is larger than its kind's limit (``MAX_FILE_BYTES``); it was not read."""


def check_size(source: str, size: int, kind: str) -> None:
    """Refuse a metadata file of ``kind`` (a key of ``MAX_FILE_BYTES``) over its limit, before it is read.

    Raises:
        FileTooLargeError: naming the file, its size, the limit and the real file's size.
    """
    limit = MAX_FILE_BYTES[kind]
    if size > limit:
        what, real = _KIND_TEXT[kind]
        raise FileTooLargeError(
            f"{source}: {size:,} bytes, over the {limit // _MIB} MiB limit for a {what} (NIH's is {real}); "
            "it was not read: this is not the file it is named after, check the source or download it again"
        )


def short(value: Any, width: int = MAX_VALUE_CHARS) -> Any:
    """``value`` fit for a message: text longer than ``width`` cut (saying how long it was), a list or tuple
    to its first ``MAX_LISTED`` items (saying how many more)."""
    if isinstance(value, str) and len(value) > width:
        return f"{value[:width]}... ({len(value):,} chars)"
    if isinstance(value, list | tuple):
        items = [short(item, width) for item in value[:MAX_LISTED]]
        return [*items, f"... and {len(value) - MAX_LISTED:,} more"] if len(value) > MAX_LISTED else items
    return value


def brief(items: list[Any] | tuple[Any, ...], limit: int = MAX_LISTED) -> str:
    """``['a', 'b'] and 5 more``: the first ``limit`` items (each cut by :func:`short`), then how many more."""
    shown = "[" + ", ".join(repr(short(item)) for item in items[:limit]) + "]"
    return shown + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


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
    return {k: (v,) if isinstance(v, str) else v for k, v in names.items()}


_LOOSE_DROP = re.compile(r"[\s_#-]+")
#: pandas names a column without a header ``Unnamed: 11``: the same as an empty name.
_PANDAS_UNNAMED = re.compile(r"unnamed:\s*\d+", re.IGNORECASE)
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
_ALL_KEYS = _CORE_KEYS | set(SIZE_KEYS)

DATA_ENTRY_VARIANTS: tuple[_Variant, ...] = (
    _Variant("data_entry/bracketed-trailing-comma", _tokens({**_SPACED, **_BRACKETED}), _ALL_KEYS,
             _CORE_EXAMPLE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],", trailing=True),
    _Variant("data_entry/bracketed", _tokens({**_SPACED, **_BRACKETED}), _ALL_KEYS,
             _CORE_EXAMPLE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]", trailing=False),
    _Variant("data_entry/explicit", _tokens({**_SPACED, **_EXPLICIT}), _ALL_KEYS,
             _CORE_EXAMPLE + "," + ",".join(_EXPLICIT)),
    _Variant("data_entry/no-size", _tokens(_SPACED), _CORE_KEYS, _CORE_EXAMPLE),
    _Variant("data_entry/underscore", _tokens({**_UNDERSCORE, **_EXPLICIT, **_BRACKETED}), _CORE_KEYS,
             _CORE_EXAMPLE.replace(" ", "_").replace("-up", "_Up") + "[,size and spacing columns]"),
)  # fmt: skip
_BOX_KEYS = frozenset({"image_index", "label", "x", "y", "w", "h"})
BBOX_VARIANTS: tuple[_Variant, ...] = (
    _Variant("bbox/nih", _tokens({"Image Index": "image_index", "Finding Label": "label",
                                  "Finding Labels": "label", "Bbox [x,y,w,h]": ("x", "y", "w", "h")}),
             _BOX_KEYS, "Image Index,Finding Label,Bbox [x,y,w,h],,,"),
    _Variant("bbox/explicit", _tokens({"Image Index": "image_index", "Finding Label": "label",
                                       "Finding Labels": "label", "x": "x", "y": "y", "w": "w", "h": "h"}),
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


def loose_name(token: str) -> str:
    """A column name without case, spaces, ``_``, ``-`` or ``#``: ``Follow_Up_#`` -> ``followup``."""
    return _LOOSE_DROP.sub("", token.lower())


def _match(tokens: list[str], trailing: int, variant: _Variant, loose: bool) -> list[str] | None:
    if variant.trailing is not None and variant.trailing != (trailing > 0):
        return None
    names = {loose_name(k) if loose else k.lower(): v for k, v in variant.tokens.items()}
    keys: list[str] = []
    for token in tokens:
        mapped = names.get(loose_name(token) if loose else token.lower())
        if mapped is None:
            return None
        keys.extend(mapped)
    if len(set(keys)) != len(keys) or not variant.required <= set(keys):
        return None
    return keys


@dataclass(frozen=True)
class _Match:
    variant: _Variant
    keys: list[str]  # one per cell; ``_row_number`` for a leading index column
    notes: dict[str, int]


def _header_tokens(header: list[str]) -> tuple[list[str], int, int]:
    """Column names, the number of trailing empty columns and of leading (index) columns."""
    tokens = ["" if _PANDAS_UNNAMED.fullmatch(t) else t for t in split_header(header)]
    trailing = 0
    while tokens and not tokens[-1]:
        tokens.pop()
        trailing += 1
    leading = 1 if len(tokens) > 1 and not tokens[0] else 0
    return tokens[leading:], trailing, leading


def _recognise(header: list[str], source: str, variants: tuple[_Variant, ...]) -> _Match:
    """Find the variant of a header: exact names (any case) first, then names spelled differently."""
    tokens, trailing, leading = _header_tokens(header)
    notes = {"trailing_empty_columns": trailing, "leading_index_column": leading}
    for loose in (False, True):
        for variant in variants:
            keys = _match(tokens, trailing, variant, loose)
            if keys is not None:
                notes["header_spelled_differently"] = int(loose)
                return _Match(variant, ["_row_number"] * leading + keys, {k: v for k, v in notes.items() if v})
    known = "\n".join(f"  {v.name}: {v.example}" for v in variants)
    raise UnknownHeaderError(f"{source}: unknown header; columns found: {brief(tokens)} (plus {trailing} empty); "
                             f"{_closest(tokens, trailing, variants)}; known variants:\n{known}")  # fmt: skip


def _closest(tokens: list[str], trailing: int, variants: tuple[_Variant, ...]) -> str:
    loose = [loose_name(token) for token in tokens]
    distinct = set(loose)
    table = {variant.name: {loose_name(k): v for k, v in variant.tokens.items()} for variant in variants}

    def names(variant: _Variant) -> dict[str, tuple[str, ...]]:
        return table[variant.name]

    def unknown(variant: _Variant) -> list[str]:
        known = names(variant)
        return [token for token, name in zip(tokens, loose, strict=True) if name not in known]

    def lacking(variant: _Variant) -> set[str]:
        found = {key for name, keys in names(variant).items() if name in distinct for key in keys}
        return set(variant.required) - found

    def distance(variant: _Variant) -> tuple[int, bool]:
        mismatch = len(unknown(variant)) + len(lacking(variant))
        return mismatch, variant.trailing is not None and variant.trailing != (trailing > 0)

    best = min(variants, key=distance)
    lacking_keys = lacking(best)
    missing = dict.fromkeys(" or ".join(repr(name) for name, k in best.tokens.items() if k == keys)
                            for keys in best.tokens.values() if lacking_keys & set(keys))  # fmt: skip
    text = f"closest variant {best.name}: unexpected columns {brief(unknown(best))}, "
    text += f"missing columns [{', '.join(missing)}]"
    if any(";" in token or "\t" in token for token in tokens):
        text += "; the header looks separated by ';' or tabs: save the file comma-separated"
    return text


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
    match = _recognise(raw.header, source, DATA_ENTRY_VARIANTS)
    variant, keys, notes = match.variant, match.keys, dict(match.notes)
    count_note(notes, "patient_sex_header", any(t.lower() == "patient sex" for t in split_header(raw.header)))
    frame = normalise_data_entry(_cells_frame(raw, keys, notes), notes)
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
    match = _recognise(raw.header, source, BBOX_VARIANTS)
    variant, keys, notes = match.variant, match.keys, {k: v for k, v in match.notes.items() if "trailing" not in k}
    cells = _cells_frame(raw, keys, notes)
    count_note(notes, "infiltrate_renamed", cells["label"].isin(list(BBOX_LABEL_ALIASES)).sum())
    columns: dict[str, pd.Series] = {
        "image_index": cells["image_index"],
        "label": cells["label"].replace(BBOX_LABEL_ALIASES),
        **{axis: to_float(cells[axis], notes, axis) for axis in ("x", "y", "w", "h")},
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
    if _recognise(raw.header, source, DATA_ENTRY_VARIANTS + BBOX_VARIANTS).variant in BBOX_VARIANTS:
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
