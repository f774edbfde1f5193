"""Reading a metadata file's bytes: unreadable files are named with what to do; values in messages stay short."""

from __future__ import annotations

import pytest

from pipeline.curate.metadata import load_any_table, load_bboxes, load_data_entry
from pipeline.curate.reading import brief, load_split_list, read_csv, short, split_list_entries
from pipeline.errors import UnknownHeaderError, UnreadableFileError
from tests.reference import REFERENCE

CORE = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"


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


def test_split_lists_tolerate_crlf_blank_lines_and_whitespace() -> None:
    data = b"\xef\xbb\xbf00000001_000.png\r\n\r\n  00000001_001.png \r\n00000002_000.png\n\n"
    names = ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    assert load_split_list(data, "train_val_list.txt") == names
    assert [n for n, _ in split_list_entries(data, "train_val_list.txt")] == [1, 3, 4]


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


def test_rows_keep_their_physical_line_numbers_across_blank_lines() -> None:
    raw = read_csv(
        b"\xef\xbb\xbfImage Index,Patient ID\r\n\r\n00000001_000.png,1\r\n\r\n\r\n00000002_000.png,2", "f.csv"
    )
    assert raw.header == ["Image Index", "Patient ID"]
    assert raw.rows == [["00000001_000.png", "1"], ["00000002_000.png", "2"]]
    assert raw.lines == [3, 6]


def test_a_cell_over_the_csv_field_limit_is_an_unreadable_file_not_a_traceback() -> None:
    data = b'Image Index,Patient ID\n"' + b"x" * 200_000 + b'",1\n'
    with pytest.raises(UnreadableFileError, match=r"^huge\.csv: not a readable CSV file near line 2: field larger"):
        read_csv(data, "huge.csv")


def test_brief_lists_everything_when_there_is_little() -> None:
    assert brief(["Image Index", "Age"]) == "['Image Index', 'Age']"
    assert brief([]) == "[]"
