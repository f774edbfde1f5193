"""The metadata loader: every real header variant and quirk normalises to the same table."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pandas as pd
import pytest

from pipeline.curate.metadata import (
    DATA_ENTRY_COLUMNS,
    DATA_ENTRY_DTYPES,
    MAX_FILE_BYTES,
    FileTooLargeError,
    LoadedTable,
    UnknownHeaderError,
    UnreadableFileError,
    brief,
    check_size,
    load_any_table,
    load_bboxes,
    load_data_entry,
    load_split_list,
    short,
    split_header,
    split_list_entries,
)
from pipeline.nih import BBOX_LABELS, LABELS
from tests.reference import BBOX_FILE, DATA_ENTRY_FILE, REFERENCE

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


def test_unknown_header_lists_columns_and_known_variants() -> None:
    with pytest.raises(UnknownHeaderError) as caught:
        load_data_entry(b"Image Index,Finding Labels,Age\n00000001_000.png,Mass,5\n", "odd.csv")
    message = str(caught.value)
    assert message.startswith("odd.csv:")
    assert "'Finding Labels'" in message
    assert "'Age'" in message
    for variant in ("bracketed-trailing-comma", "data_entry/bracketed", "explicit", "underscore"):
        assert variant in message


def test_missing_column_is_an_unknown_header_naming_it(rows: Rows) -> None:
    header = BRACKETED.replace("Patient Gender,", "")
    with pytest.raises(UnknownHeaderError, match=r"missing columns \['Patient Gender' or 'Patient Sex'\]"):
        load_data_entry(render(header, [r[:5] + r[6:] for r in rows[:3]]), "no-sex.csv")


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty"), (b" \r\n\n", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
     ("Image Index,é\n".encode("latin-1"), "not UTF-8")],
)  # fmt: skip
def test_unreadable_files_name_the_file(data: bytes, reason: str) -> None:
    for loader in (load_data_entry, load_bboxes, load_any_table, load_split_list):
        with pytest.raises(UnreadableFileError, match=f"^broken.bin: .*{reason}"):
            loader(data, "broken.bin")


def test_real_png_is_unreadable() -> None:
    png = next((REFERENCE / "images").glob("*.png"))
    with pytest.raises(UnreadableFileError, match=png.name):
        load_data_entry(png.read_bytes(), png.name)


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


def test_split_header_rejoins_bracketed_names() -> None:
    cells = next(csv.reader(io.StringIO("Image Index,Bbox [x,y,w,h], Width ,,")))
    assert split_header(cells) == ["Image Index", "Bbox [x,y,w,h]", "Width", "", ""]


def test_split_lists_tolerate_crlf_blank_lines_and_whitespace() -> None:
    data = b"\xef\xbb\xbf00000001_000.png\r\n\r\n  00000001_001.png \r\n00000002_000.png\n\n"
    names = ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    assert load_split_list(data, "train_val_list.txt") == names
    assert [n for n, _ in split_list_entries(data, "train_val_list.txt")] == [1, 3, 4]


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


def test_unknown_header_names_the_closest_variant_and_a_wrong_delimiter() -> None:
    header = b"Image Index,Finding Labels,Patient ID,Age,Patient Gender,View Position\n"
    with pytest.raises(UnknownHeaderError) as caught:
        load_data_entry(header + b"00000001_000.png,Mass,1,5,M,PA\n", "renamed.csv")
    message = str(caught.value)
    assert "closest variant data_entry/no-size: unexpected columns ['Age']" in message
    assert "missing columns ['Follow-up #', 'Patient Age']" in message
    semicolons = (CORE.replace(",", ";") + "\n").encode()
    with pytest.raises(UnknownHeaderError, match="separated by ';' or tabs: save the file comma-separated"):
        load_data_entry(semicolons, "excel.csv")


def test_a_header_with_a_million_columns_gives_a_short_error() -> None:
    header = ",".join(f"Column {n}" for n in range(1_000_000)) + "\n"
    with pytest.raises(UnknownHeaderError) as caught:
        load_any_table((header + "1,2\n").encode(), "wide.csv")
    message = str(caught.value)
    assert len(message) < 3000
    assert "columns found: ['Column 0', 'Column 1'," in message
    assert "'Column 9'] and 999,990 more (plus 0 empty)" in message
    assert "unexpected columns ['Column 0'," in message
    assert message.count("and 999,990 more") == 2


def test_long_values_in_messages_are_cut() -> None:
    assert short("x" * 100) == "x" * 80 + "... (100 chars)"
    assert short(list(range(25))) == [*range(10), "... and 15 more"]
    assert short(1.5) == 1.5
    assert brief(["a" * 200, "b"], limit=1) == "['" + "a" * 80 + "... (200 chars)'] and 1 more"
    long_name = "N" * 5000
    with pytest.raises(UnknownHeaderError) as caught:
        load_data_entry(f"{CORE},{long_name}\n".encode(), "long.csv")
    assert long_name not in str(caught.value)
    assert "(5,000 chars)" in str(caught.value)


def test_size_limits_are_per_kind_and_far_above_the_real_files() -> None:
    assert MAX_FILE_BYTES["data_entry"] >= 10 * 8_500_000
    assert MAX_FILE_BYTES["bbox"] >= 100 * 90_000
    assert MAX_FILE_BYTES["split_list"] >= 10 * 1_600_000
    check_size("BBox_List_2017.csv", MAX_FILE_BYTES["bbox"], "bbox")
    with pytest.raises(FileTooLargeError, match=r"Data_Entry_2017\.csv: 1,073,741,824 bytes, over the 128 MiB limit"):
        check_size("Data_Entry_2017.csv", 1 << 30, "data_entry")
    assert issubclass(FileTooLargeError, UnreadableFileError)
