"""Header recognition: which variant a header is, and an unknown header's error naming what is wrong."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.curate.metadata import load_any_table, load_data_entry
from pipeline.curate.variants import (
    BBOX_VARIANTS,
    DATA_ENTRY_VARIANTS,
    ROW_NUMBER,
    Variant,
    loose_name,
    recognise,
    split_header,
)
from pipeline.errors import UnknownHeaderError
from tests.reference import DATA_ENTRY_FILE

CORE = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"
BRACKETED = CORE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
Rows = list[list[str]]


@pytest.fixture(scope="module")
def rows() -> Rows:
    return list(csv.reader(io.StringIO(DATA_ENTRY_FILE.read_text(), newline="")))[1:]


def render(header: str, rows: Rows) -> bytes:
    return "".join(line + "\n" for line in [header, *(",".join(r) for r in rows)]).encode()


def cells(header: str) -> list[str]:
    return next(csv.reader(io.StringIO(header)))


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


def test_split_header_rejoins_bracketed_names() -> None:
    cells = next(csv.reader(io.StringIO("Image Index,Bbox [x,y,w,h], Width ,,")))
    assert split_header(cells) == ["Image Index", "Bbox [x,y,w,h]", "Width", "", ""]


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


@pytest.mark.parametrize("variant", [v for v in DATA_ENTRY_VARIANTS + BBOX_VARIANTS if "[," not in v.example])
def test_each_example_an_error_message_shows_is_recognised_as_its_variant(variant: Variant) -> None:
    match = recognise(cells(variant.example), "example.csv", DATA_ENTRY_VARIANTS + BBOX_VARIANTS)
    assert match.variant is variant
    assert "header_spelled_differently" not in match.notes


def test_a_row_number_column_and_trailing_commas_are_noted_not_refused() -> None:
    match = recognise(cells("," + CORE + ",,"), "export.csv", DATA_ENTRY_VARIANTS)
    assert match.variant.name == "data_entry/no-size"
    assert match.keys[0] == ROW_NUMBER
    assert match.keys[1:] == ["image_index", "labels", "follow_up", "patient_id", "age", "sex", "view"]
    assert match.notes == {"trailing_empty_columns": 2, "leading_index_column": 1}


def test_names_spelled_differently_match_only_after_exact_names_fail() -> None:
    assert loose_name("Follow_Up_#") == loose_name("follow-up #") == "followup"
    exact = recognise(cells(BRACKETED.upper()), "upper.csv", DATA_ENTRY_VARIANTS)
    assert (exact.variant.name, exact.notes) == ("data_entry/bracketed", {})
    loose = recognise(cells(BRACKETED.replace("Follow-up #", "Follow_up")), "loose.csv", DATA_ENTRY_VARIANTS)
    assert loose.variant.name == "data_entry/bracketed"
    assert loose.notes == {"header_spelled_differently": 1}


def test_a_box_list_given_as_data_entry_is_refused_with_the_data_entry_variants() -> None:
    header = cells("Image Index,Finding Label,Bbox [x,y,w,h],,,")
    assert recognise(header, "b.csv", DATA_ENTRY_VARIANTS + BBOX_VARIANTS).variant.name == "bbox/nih"
    with pytest.raises(UnknownHeaderError, match=r"^Data_Entry_2017\.csv: unknown header") as caught:
        recognise(header, "Data_Entry_2017.csv", DATA_ENTRY_VARIANTS)
    assert "data_entry/bracketed" in str(caught.value)
    assert "bbox/nih" not in str(caught.value)
