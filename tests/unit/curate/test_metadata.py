"""The metadata loader: every real header variant and quirk normalises to the same table."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pandas as pd
import pytest

from pipeline.curate.metadata import LoadedTable, load_any_table, load_bboxes, load_data_entry
from pipeline.curate.normalise import DATA_ENTRY_COLUMNS, DATA_ENTRY_DTYPES
from pipeline.errors import UnknownHeaderError
from pipeline.nih import BBOX_LABELS, LABELS
from tests.reference import BBOX_FILE, DATA_ENTRY_FILE

CORE = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"
BRACKETED = CORE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
SIZE_NAMES = "OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y"
EXPLICIT = f"{CORE},{SIZE_NAMES}"
UNDERSCORE = "Image_Index,Finding_Labels,Follow_Up_#,Patient_ID,Patient_Age,Patient_Gender,View_Position"
Rows = list[list[str]]


@pytest.fixture(scope="module")
def reference() -> LoadedTable:
    return load_data_entry(DATA_ENTRY_FILE.read_bytes(), DATA_ENTRY_FILE.name)


@pytest.fixture(scope="module")
def rows() -> Rows:
    return list(csv.reader(io.StringIO(DATA_ENTRY_FILE.read_text(), newline="")))[1:]


def render(header: str, rows: Rows, *, end: str = "\n", row_suffix: str = "") -> bytes:
    return "".join(line + end for line in [header, *(",".join(r) + row_suffix for r in rows)]).encode()


def edit(rows: Rows, column: int, fn: Callable[[str], str]) -> Rows:
    return [[fn(cell) if i == column else cell for i, cell in enumerate(row)] for row in rows]


def entry(name: str, *, follow_up: str = "0", age: str = "58") -> list[str]:
    return [name, "Mass", follow_up, "1", age, "M", "PA", "1", "1", "0.1", "0.1"]


def same_rows(table: LoadedTable, reference: LoadedTable, ignore: tuple[str, ...] = ()) -> None:
    columns = [c for c in DATA_ENTRY_COLUMNS if c not in ignore]
    pd.testing.assert_frame_equal(table.frame[columns], reference.frame[columns])


def test_reference_file_loads_with_exact_columns_and_dtypes(reference: LoadedTable) -> None:
    frame = reference.frame
    assert reference.variant == "data_entry/bracketed"
    assert list(frame.columns) == list(DATA_ENTRY_COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == DATA_ENTRY_DTYPES
    assert len(frame) == 2000
    assert reference.lines[:2] == (2, 3)
    assert reference.lines[-1] == 2001
    first = frame.iloc[1]
    assert first["image_index"] == "00000001_001.png"
    assert first["labels"] == ["Cardiomegaly", "Emphysema"]
    assert (first["patient_id"], first["follow_up"], first["age_years"]) == (1, 1, 58.0)
    assert (first["original_width"], first["pixel_spacing_x"]) == (2894, 0.143)
    assert not frame["age_flagged"].any()
    assert reference.notes == {}
    assert {label for labels in frame["labels"] for label in labels} == set(LABELS)


@pytest.mark.parametrize(
    ("variant", "header", "suffix"),
    [
        ("data_entry/bracketed-trailing-comma", BRACKETED + ",", ","),
        ("data_entry/bracketed-trailing-comma", BRACKETED + ",", ""),
        ("data_entry/bracketed", BRACKETED, ""),
        ("data_entry/explicit", EXPLICIT, ""),
        ("data_entry/underscore", f"{UNDERSCORE},{SIZE_NAMES}", ""),
    ],
)  # fmt: skip
def test_header_variants_normalise_to_the_same_table(
    variant: str, header: str, suffix: str, rows: Rows, reference: LoadedTable
) -> None:
    table = load_data_entry(render(header, rows, row_suffix=suffix), "variant.csv")
    assert table.variant == variant
    same_rows(table, reference)


def test_underscore_variant_without_size_columns_has_null_size(rows: Rows, reference: LoadedTable) -> None:
    table = load_data_entry(render(UNDERSCORE, [r[:7] for r in rows]), "underscore.csv")
    assert table.variant == "data_entry/underscore"
    assert table.notes["size_columns_missing"] == 1
    size = ["original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y"]
    same_rows(table, reference, ignore=tuple(size))
    assert table.frame[size].isna().all().all()
    assert {c: str(t) for c, t in table.frame.dtypes.items()} == DATA_ENTRY_DTYPES


def test_kaggle_sample_labels_style_with_suffixed_ages(rows: Rows, reference: LoadedTable) -> None:
    table = load_data_entry(render(EXPLICIT, edit(rows, 4, lambda a: f"{int(a):03d}Y")), "sample_labels.csv")
    assert table.variant == "data_entry/explicit"
    assert table.notes["age_suffix_years"] == 2000
    same_rows(table, reference, ignore=("age_raw",))
    assert table.frame["age_raw"].iloc[0] == "057Y"


def test_byte_level_quirks_normalise_to_the_same_table(rows: Rows, reference: LoadedTable) -> None:
    data = b"\xef\xbb\xbf" + render(BRACKETED, rows, end="\r\n") + b"\r\n\r\n\n"
    table = load_data_entry(data, "bom-crlf.csv")
    assert table.variant == "data_entry/bracketed"
    same_rows(table, reference)


def test_cell_level_quirks_normalise_to_the_same_table(rows: Rows, reference: LoadedTable) -> None:
    quirky = edit(rows, 3, lambda p: p.zfill(8))
    quirky = edit(quirky, 2, lambda f: f.zfill(3))
    quirky = edit(quirky, 1, lambda labels: labels.replace("No Finding", "No_Finding"))
    quirky = edit(quirky, 9, lambda s: "0.14300000000000002" if s == "0.143" else s)
    table = load_data_entry(render(BRACKETED.replace("Gender", "Sex"), quirky), "quirky.csv")
    same_rows(table, reference)
    notes = table.notes
    assert notes["patient_sex_header"] == 1
    assert notes["no_finding_underscore"] > 900
    assert notes["spacing_rounded"] > 100
    assert notes["patient_id_zero_padded"] == 2000


@pytest.mark.parametrize(
    ("raw", "years", "flagged"),
    [("058Y", 58.0, False), ("58", 58.0, False), ("011M", 11 / 12, False), ("001D", 1 / 365.25, False),
     ("148Y", None, True), ("411", None, True), ("abc", None, True), ("", None, True), ("-5", None, True)],
)  # fmt: skip
def test_ages(raw: str, years: float | None, flagged: bool) -> None:
    table = load_data_entry(render(BRACKETED, [entry("00000001_000.png", age=raw)]), "ages.csv")
    row = table.frame.iloc[0]
    assert row["age_raw"] == raw
    assert bool(row["age_flagged"]) is flagged
    assert pd.isna(row["age_years"]) if years is None else row["age_years"] == pytest.approx(years)


def test_age_notes_count_units_and_impossible_ages() -> None:
    ages = ["058Y", "011M", "001D", "148Y", "412Y", "xx"]
    body = [entry(f"00000001_{i:03d}.png", follow_up=str(i), age=age) for i, age in enumerate(ages)]
    notes = load_data_entry(render(BRACKETED, body), "ages.csv").notes
    assert notes["age_months"] == 1
    assert notes["age_days"] == 1
    assert notes["age_suffix_years"] == 3
    assert notes["age_impossible"] == 2
    assert notes["age_unparsable"] == 1


def test_unconvertible_cells_keep_the_row_with_nulls() -> None:
    body = [["00000001_000.png", "Mass", "x1", "one", "58", "M", "PA", "wide", "1", "?", "0.1"]]
    table = load_data_entry(render(BRACKETED, body) + b"00000001_001.png,Mass\n", "bad-cells.csv")
    frame = table.frame
    assert len(frame) == 2
    assert table.lines == (2, 3)
    assert frame[["patient_id", "follow_up", "original_width", "pixel_spacing_x"]].iloc[0].isna().all()
    assert table.notes["unparsable_patient_id"] == 2
    assert table.notes["rows_short"] == 1


def test_real_bbox_list() -> None:
    table = load_bboxes(BBOX_FILE.read_bytes(), BBOX_FILE.name)
    frame = table.frame
    assert table.variant == "bbox/nih"
    assert list(frame.columns) == ["image_index", "label", "x", "y", "w", "h"]
    assert all(str(frame[c].dtype) == "float64" for c in "xywh")
    # 984 real boxes; this copy ends with one extra, bogus row (two labels, copied coordinates) on line 986
    assert len(frame) == 985
    assert frame["label"].isin(BBOX_LABELS).sum() == 984
    assert frame.iloc[-1]["label"] == "Cardiomegaly|Emphysema"
    assert table.lines[-1] == 986
    assert "Infiltrate" not in set(frame["label"])
    assert (frame["label"] == "Infiltration").sum() == 123
    assert table.notes == {"infiltrate_renamed": 123}
    assert frame.iloc[0]["x"] == pytest.approx(225.084745762712)


def test_bbox_variants_normalise_to_the_same_table() -> None:
    real = load_bboxes(BBOX_FILE.read_bytes(), BBOX_FILE.name)
    body = BBOX_FILE.read_text().splitlines()[1:]
    explicit = "\r\n".join(["Image Index,Finding Label,x,y,w,h", *body]).encode()
    table = load_bboxes(b"\xef\xbb\xbf" + explicit, "explicit.csv")
    assert table.variant == "bbox/explicit"
    pd.testing.assert_frame_equal(table.frame, real.frame)


def test_load_any_table_dispatches_on_the_header(rows: Rows) -> None:
    assert load_any_table(BBOX_FILE.read_bytes(), "b.csv").variant == "bbox/nih"
    assert load_any_table(render(EXPLICIT, rows[:2]), "d.csv").variant == "data_entry/explicit"
    with pytest.raises(UnknownHeaderError, match="bbox/nih"):
        load_any_table(b"a,b\n1,2\n", "x.csv")


def test_names_spelled_differently_are_recognised(rows: Rows, reference: LoadedTable) -> None:
    header = "image_index,FINDING LABELS,Follow-Up,patient-id,Patient_Age,Patient Sex,view position,"
    header += "Original Image Width,Original_Image_Height,OriginalImagePixelSpacing-X,originalimagepixelspacing y"
    table = load_data_entry(render(header, rows), "respelled.csv")
    assert table.variant == "data_entry/explicit"
    assert table.notes["header_spelled_differently"] == 1
    same_rows(table, reference)
    boxes = load_bboxes(b"image_index,finding_labels,BBox [x, y, w, h]\n00000001_000.png,Mass,1,2,3,4\n", "b.csv")
    assert boxes.variant == "bbox/nih"
    assert boxes.frame.iloc[0].tolist() == ["00000001_000.png", "Mass", 1.0, 2.0, 3.0, 4.0]


def test_columns_in_another_order_give_the_same_table(rows: Rows, reference: LoadedTable) -> None:
    names = EXPLICIT.split(",")
    order = [10, 0, 3, 1, 9, 2, 4, 8, 5, 7, 6]
    table = load_data_entry(render(",".join(names[i] for i in order), [[r[i] for i in order] for r in rows]), "o.csv")
    assert table.variant == "data_entry/explicit"
    same_rows(table, reference)


def test_core_columns_only(rows: Rows, reference: LoadedTable) -> None:
    table = load_data_entry(render(CORE, [r[:7] for r in rows]), "core.csv")
    assert table.variant == "data_entry/no-size"
    assert table.notes == {"size_columns_missing": 1}
    size = ("original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y")
    same_rows(table, reference, ignore=size)
    assert table.frame[list(size)].isna().all().all()


def test_a_pandas_export_with_its_index_and_unnamed_column(rows: Rows, reference: LoadedTable) -> None:
    header = "," + BRACKETED + ",Unnamed: 11"
    body = [[str(i), *row, ""] for i, row in enumerate(rows)]
    table = load_data_entry(render(header, body), "to_csv.csv")
    assert table.variant == "data_entry/bracketed-trailing-comma"
    assert table.notes == {"trailing_empty_columns": 1, "leading_index_column": 1}
    same_rows(table, reference)
    assert list(table.frame.columns) == list(DATA_ENTRY_COLUMNS)


def test_whole_numbers_written_as_floats(rows: Rows, reference: LoadedTable) -> None:
    floats = edit(edit(edit(rows, 2, lambda f: f + ".0"), 3, lambda p: p + ".0"), 7, lambda w: w + ".0")
    table = load_data_entry(render(BRACKETED, floats), "floats.csv")
    same_rows(table, reference)
    assert table.notes["follow_up_written_as_float"] == 2000
    assert table.notes["original_width_written_as_float"] == 2000
    broken = load_data_entry(render(BRACKETED, edit(rows[:1], 2, lambda f: "1.5")), "half.csv")
    assert broken.notes["unparsable_follow_up"] == 1
    assert pd.isna(broken.frame["follow_up"].iloc[0])
