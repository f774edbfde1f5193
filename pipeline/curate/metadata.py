"""Load the NIH ChestX-ray14 metadata tables (Data_Entry, the box list) into normalised pandas frames.

A load reads the file's cells (:mod:`pipeline.curate.reading`), recognises its header among the known variants
(:mod:`pipeline.curate.variants`) and converts the cells of each column role (:mod:`pipeline.curate.normalise`).
The result is a :class:`LoadedTable`: the frame, the variant, the source line of every row and the quirks met.

Cells are read as text and converted explicitly: a cell that cannot be converted becomes null and the row is
kept, so validation can name the row. Only unreadable bytes and unknown headers are load errors. A row with
fewer cells than the header is padded (``rows_short``), one with more non-empty cells is cut
(``rows_with_extra_cells``). Quirks are counted in ``LoadedTable.notes`` (only non-zero counts are kept).
Split lists are plain lines: :func:`pipeline.curate.reading.split_list_entries`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from pipeline.curate.normalise import count_note, normalise_data_entry, to_float
from pipeline.curate.reading import RawTable, read_csv
from pipeline.curate.variants import BBOX_VARIANTS, DATA_ENTRY_VARIANTS, recognise, split_header

__all__ = [
    "BBOX_COLUMNS",
    "BBOX_LABEL_ALIASES",
    "LoadedTable",
    "load_any_table",
    "load_bboxes",
    "load_data_entry",
]

logger = logging.getLogger(__name__)

BBOX_COLUMNS: tuple[str, ...] = ("image_index", "label", "x", "y", "w", "h")
#: The box list's spelling of a finding -> Data_Entry's.
BBOX_LABEL_ALIASES: dict[str, str] = {"Infiltrate": "Infiltration"}


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


def _cells_frame(raw: RawTable, keys: list[str], notes: dict[str, int]) -> pd.DataFrame:
    """The rows' stripped text cells, one column per role in ``keys``; ragged rows padded or cut (and counted)."""
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
        The normalised table (columns ``normalise.DATA_ENTRY_COLUMNS``), its variant and quirk counts.

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
        UnknownHeaderError: if the header matches no known Data_Entry variant.
    """
    return _data_entry_table(read_csv(data, source), source)


def _data_entry_table(raw: RawTable, source: str) -> LoadedTable:
    match = recognise(raw.header, source, DATA_ENTRY_VARIANTS)
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
    return _bbox_table(read_csv(data, source), source)


def _bbox_table(raw: RawTable, source: str) -> LoadedTable:
    match = recognise(raw.header, source, BBOX_VARIANTS)
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
    raw = read_csv(data, source)
    if recognise(raw.header, source, DATA_ENTRY_VARIANTS + BBOX_VARIANTS).variant in BBOX_VARIANTS:
        return _bbox_table(raw, source)
    return _data_entry_table(raw, source)
