"""Row quarantine: each defective row of an auxiliary file is named with its file, line and reason; a file that is
mostly defective is refused as a whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.curate.quarantine import (
    ROW_DEFECT_COLUMNS,
    defect_table,
    empty_row_defects,
    mark_repeats,
    quarantined_lines,
    refuse_if_mostly_defective,
    row_defect_text,
)
from pipeline.errors import DefectiveFileError, UnreadableFileError


def rows(file: str, lines: list[int], reason: str = "label 'Flu' is not one of the 8") -> pd.DataFrame:
    return pd.DataFrame({"file": file, "line": lines, "reason": reason})


def test_a_repeat_names_the_line_it_repeats_even_with_empty_cells() -> None:
    frame = pd.DataFrame(
        {"line": [2, 3, 4, 5, 6], "name": ["a", "b", "a", None, None], "x": [1.0, 1.0, 1.0, np.nan, np.nan]}
    )
    marked = mark_repeats(frame, ["name", "x"])
    assert marked["repeated"].tolist() == [False, False, True, False, True]
    assert marked["first_line"].tolist() == [pd.NA, pd.NA, 2, pd.NA, 5]
    empty = mark_repeats(frame.iloc[:0], ["name"])
    assert list(empty.columns) == ["line", "name", "x", "repeated", "first_line"]


def test_half_defective_is_kept_more_than_half_is_refused() -> None:
    refuse_if_mostly_defective(rows("BBox_List_2017.csv", [2, 3]), {"BBox_List_2017.csv": 4}, "bounding-box list")
    refuse_if_mostly_defective(None, {}, "split list")
    with pytest.raises(DefectiveFileError) as caught:
        refuse_if_mostly_defective(rows("test_list.txt", [7, 8, 9]), {"test_list.txt": 5}, "split list")
    assert str(caught.value) == (
        "test_list.txt: 3 of 5 rows have defects (e.g. line 7: label 'Flu' is not one of the 8); more than half, "
        "so this is not a usable split list: check the file or download it again"
    )
    assert isinstance(caught.value, UnreadableFileError)  # caught where an unreadable file is: cxr validate exits 2


def test_the_defect_table_names_file_line_image_and_reason() -> None:
    validated = pd.DataFrame({"line": [2, 3, 4], "name": ["00000001_000.png", "x" * 500, "00000002_000.png"]})
    failing = validated.iloc[[1]].assign(reason="'x...' is not an image name")
    files = pd.Series(["train_val_list.txt", "train_val_list.txt", "test_list.txt"])
    table = defect_table(failing, "split_list", files, "name")
    assert list(table.columns) == list(ROW_DEFECT_COLUMNS)
    record = table.to_dict("records")[0]
    assert record == {"kind": "split_list", "file": "train_val_list.txt", "line": 3,
                      "image_index": "x" * 80 + "... (500 chars)", "reason": "'x...' is not an image name"}  # fmt: skip
    text = row_defect_text(record)
    assert text.startswith("train_val_list.txt line 3 (" + "x" * 80)
    assert text.endswith("): 'x...' is not an image name")
    assert len(text) < 200


def test_quarantined_lines_are_those_of_the_file_asked_for() -> None:
    defects = pd.concat([rows("train_val_list.txt", [3, 9]), rows("test_list.txt", [3])], ignore_index=True)
    assert quarantined_lines(defects, "train_val_list.txt") == {3, 9}
    assert quarantined_lines(defects, "BBox_List_2017.csv") == set()
    assert quarantined_lines(None, "test_list.txt") == set()
    empty = empty_row_defects()
    assert list(empty.columns) == list(ROW_DEFECT_COLUMNS)
    assert str(empty["line"].dtype) == "int64"
