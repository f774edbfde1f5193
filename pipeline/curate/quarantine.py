"""Row quarantine of the auxiliary files (the box list, the split lists): which rows are left out, and why.

A row-level defect of an auxiliary file costs only its row: the row is left out of the curated tables and
listed with its file, line, image name (as written, cut if absurdly long) and reason, in ``ROW_DEFECT_COLUMNS``
(``row_quarantine.parquet`` of a run, then the release's ``quarantine.parquet``). Which checks quarantine rows
is said by the suites (``meta.on_failure: quarantine_row``, see :mod:`pipeline.curate.suites`); this module
turns the failing rows into that table. A file more than ``MAX_DEFECTIVE_SHARE`` of whose rows are defective is
not the file it is named after: it is refused as a whole (:class:`~pipeline.errors.DefectiveFileError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline.curate.reading import short
from pipeline.errors import DefectiveFileError

__all__ = [
    "MAX_DEFECTIVE_SHARE",
    "ROW_DEFECT_COLUMNS",
    "defect_table",
    "empty_row_defects",
    "mark_repeats",
    "quarantined_lines",
    "refuse_if_mostly_defective",
    "row_defect_text",
]

#: One row per quarantined row of an auxiliary file: ``kind`` (``bbox`` or ``split_list``), file name, line,
#: the image name the row gives (as written), and what is wrong with it.
ROW_DEFECT_COLUMNS = ("kind", "file", "line", "image_index", "reason")
#: A file with more defective rows than this share is refused as a whole (it is not the file it is named after).
MAX_DEFECTIVE_SHARE = 0.5


def empty_row_defects() -> pd.DataFrame:
    """A row-defect table without rows (``ROW_DEFECT_COLUMNS``)."""
    frame = pd.DataFrame({c: pd.Series([], dtype="str") for c in ROW_DEFECT_COLUMNS})
    return frame.astype({"line": "int64"})


def row_defect_text(row: Mapping[Any, Any]) -> str:
    """``BBox_List_2017.csv line 986 (00000001_001.png): label ... is not ...``: one quarantined row."""
    return f"{row['file']} line {row['line']} ({short(str(row['image_index']))}): {row['reason']}"


def mark_repeats(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Add ``repeated`` (the row repeats an earlier one on ``key``) and ``first_line`` (that earlier row's line)."""
    if not key or not len(frame):
        return frame.assign(repeated=False, first_line=pd.Series(pd.NA, index=frame.index, dtype="Int64"))
    repeated = frame.duplicated(key, keep="first")
    first = frame.groupby(key, dropna=False, sort=False)["line"].transform("first")
    return frame.assign(repeated=repeated.astype(bool), first_line=first.where(repeated).astype("Int64"))


def defect_table(rows: pd.DataFrame, kind: str, files: pd.Series, names: str) -> pd.DataFrame:
    """The failing rows of a suite run as ``ROW_DEFECT_COLUMNS``.

    Args:
        rows: The failing rows of the validated frame (with ``line`` and ``reason`` columns).
        kind: ``bbox`` or ``split_list``.
        files: Each validated row's file name (indexed like the validated frame).
        names: The column of ``rows`` that holds the image name.
    """
    table = pd.DataFrame(
        {
            "kind": kind,
            "file": files.loc[rows.index].astype("str"),
            "line": rows["line"].astype("int64"),
            "image_index": rows[names].astype("str").map(short).astype("str"),  # as written, cut if absurdly long
            "reason": rows["reason"].astype("str"),
        }
    )
    return table.reset_index(drop=True)


def refuse_if_mostly_defective(defects: pd.DataFrame | None, rows_per_file: Mapping[str, int], what: str) -> None:
    """Refuse a file more than ``MAX_DEFECTIVE_SHARE`` of whose rows are defective.

    Raises:
        DefectiveFileError: naming the file, how many of its rows are defective and the first defect.
    """
    if defects is None or not len(defects):
        return
    for name, group in defects.groupby("file", sort=True):
        total = rows_per_file.get(str(name), 0)
        if len(group) > MAX_DEFECTIVE_SHARE * total:
            first = group.iloc[0]
            raise DefectiveFileError(
                f"{name}: {len(group):,} of {total:,} rows have defects (e.g. line {first['line']}: "
                f"{first['reason']}); more than half, so this is not a usable {what}: check the file or download "
                "it again"
            )


def quarantined_lines(defects: pd.DataFrame | None, file: str) -> set[int]:
    """The lines of ``file`` that ``defects`` (``ROW_DEFECT_COLUMNS``) quarantines."""
    if defects is None or not len(defects):
        return set()
    return {int(line) for line in defects.loc[defects["file"] == file, "line"]}
