"""Selections on a small metadata table: what each condition keeps, how they combine, and bad arguments refused."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import nih
from pipeline.errors import UsageError
from pipeline.read.selection import Selection, image_column, label_columns, resolve, select, split_of

MANIFEST: dict[str, Any] = {"label_vector_order": list(nih.LABELS)}
#: (image_id, patient, follow_up, view, split, effusion, pleural_thickening, no_finding, age)
ROWS = [
    ("00000001_000", 1, 0, "AP", "train", False, False, True, 40.0),
    ("00000001_001", 1, 1, "PA", "train", True, False, False, 41.0),
    ("00000001_002", 1, 2, "PA", "train", False, True, False, 42.0),
    ("00000002_000", 2, 0, "PA", "train", False, False, True, 70.0),
    ("00000002_001", 2, 1, "AP", "train", True, True, False, 71.0),
    ("00000003_000", 3, 0, "PA", "val", False, False, True, 30.0),
    ("00000004_000", 4, 0, "AP", "test", True, False, False, 55.0),
    ("00000004_001", 4, 1, "PA", "test", False, False, True, 56.0),
]


def _metadata(patient_order: bool = False) -> pa.Table:
    names = ["image_id", "patient_id", "follow_up", "view_position", "split", "effusion", "pleural_thickening"]
    columns = {name: [row[i] for row in ROWS] for i, name in enumerate(names)}
    columns["no_finding"] = [row[7] for row in ROWS]
    columns["age_years"] = [row[8] for row in ROWS]
    columns["image_index"] = [f"{row[0]}.png" for row in ROWS]
    for column in label_columns(MANIFEST):
        columns.setdefault(column, [False] * len(ROWS))
    if patient_order:  # as publish computes it: the rank of each image within its patient by follow_up
        columns["patient_order"] = [row[2] for row in ROWS]
    return pa.table(columns)


def _ids(selection: Selection) -> list[str]:
    return list(selection.image_ids or ())


def test_views_keep_only_those_positions_in_metadata_order() -> None:
    chosen = select(_metadata(), MANIFEST, views=["PA"])
    assert _ids(chosen) == [r[0] for r in ROWS if r[3] == "PA"]
    assert len(chosen) == 5
    assert _ids(select(_metadata(), MANIFEST, "train", views="AP")) == ["00000001_000", "00000002_001"]


def test_findings_are_any_of_and_take_column_and_nih_spellings() -> None:
    by_column = select(_metadata(), MANIFEST, findings=["effusion", "pleural_thickening"])
    by_nih = select(_metadata(), MANIFEST, findings=["Effusion", "Pleural_Thickening"])
    by_card = select(_metadata(), MANIFEST, findings=["Pleural Thickening", "effusion"])
    expected = [r[0] for r in ROWS if r[5] or r[6]]
    assert _ids(by_column) == _ids(by_nih) == _ids(by_card) == expected
    assert _ids(select(_metadata(), MANIFEST, findings=["No Finding"])) == [r[0] for r in ROWS if r[7]]


@pytest.mark.parametrize("patient_order", [True, False], ids=["patient_order", "older release: follow_up"])
def test_first_per_patient_is_taken_among_the_selected_rows(patient_order: bool) -> None:
    metadata = _metadata(patient_order)
    assert _ids(select(metadata, MANIFEST, unique_patients="first")) == [
        "00000001_000",
        "00000002_000",
        "00000003_000",
        "00000004_000",
    ]
    # patient 1's first PA image is its second one; patient 4's is its second one
    assert _ids(select(metadata, MANIFEST, views=["PA"], unique_patients="first")) == [
        "00000001_001",
        "00000002_000",
        "00000003_000",
        "00000004_001",
    ]


def test_where_is_a_pyarrow_expression_over_the_metadata() -> None:
    chosen = select(_metadata(), MANIFEST, "train", where=pc.field("age_years") >= 42)
    assert _ids(chosen) == ["00000001_002", "00000002_000", "00000002_001"]
    assert not chosen.whole_split
    assert chosen.filter_expression() is not None


def test_a_selection_of_a_whole_split_needs_no_filter_but_still_knows_its_keys() -> None:
    chosen = select(_metadata(), MANIFEST, "test")
    assert chosen.whole_split
    assert chosen.filter_expression() is None
    assert chosen.keys() == frozenset({"00000004_000", "00000004_001"})


def test_the_filter_expression_keeps_exactly_the_selected_rows() -> None:
    chosen = select(_metadata(), MANIFEST, views=["PA"], findings=["effusion"])
    expression = chosen.filter_expression()
    assert expression is not None
    assert _metadata().filter(expression).column("image_id").to_pylist() == ["00000001_001"]
    assert chosen.keys() == frozenset({"00000001_001"})


def test_an_empty_selection_filters_every_row_out() -> None:
    nobody = select(_metadata(), MANIFEST, "train", where=pc.field("age_years") > 200)
    assert len(nobody) == 0
    assert not nobody.whole_split
    expression = nobody.filter_expression()
    assert expression is not None
    assert _metadata().filter(expression).num_rows == 0
    assert nobody.keys() == frozenset()
    assert not nobody
    assert Selection("train", None, pc.field("age_years") > 200), "an unresolved selection is no empty one"


def test_resolve_turns_splits_none_and_hand_built_selections_into_image_ids() -> None:
    metadata = _metadata()
    assert len(resolve(metadata, MANIFEST, None)) == len(ROWS)
    assert _ids(resolve(metadata, MANIFEST, "val")) == ["00000003_000"]
    by_hand = Selection("train", None, pc.field("view_position") == "AP")
    assert _ids(resolve(metadata, MANIFEST, by_hand)) == ["00000001_000", "00000002_001"]
    subset = Selection("train", ("00000001_000", "00000001_001"), pc.field("view_position") == "PA")
    assert _ids(resolve(metadata, MANIFEST, subset)) == ["00000001_001"]
    done = select(metadata, MANIFEST, views=["PA"])
    assert resolve(metadata, MANIFEST, done) is done


def test_an_unresolved_selection_says_how_to_resolve_it() -> None:
    by_hand = Selection("train", None, pc.field("view_position") == "AP")
    with pytest.raises(UsageError, match=r"release\.selection"):
        len(by_hand)
    with pytest.raises(UsageError, match=r"release\.selection"):
        by_hand.keys()
    assert Selection("train").keys() is None  # every image of the split
    assert repr(select(_metadata(), MANIFEST, "train")) == "Selection(split='train', 5 images)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"views": ["LL"]}, r"views \['LL'\] .* use PA or AP"),
        ({"views": ["pa"]}, r"use PA or AP"),
        ({"views": []}, r"views=\[\] selects nothing"),
        ({"findings": ["Flu"]}, r"finding 'Flu' is not a label .* atelectasis, .* no_finding"),
        ({"unique_patients": True}, r"unique_patients=True: use False .* or 'first'"),
        ({"unique_patients": "last"}, r"unique_patients='last'"),
        ({"where": "age_years > 3"}, r"where= takes a pyarrow compute expression"),
        ({"where": pc.field("age") > 3}, r"cannot filter the release's metadata .* its columns: image_id"),
        ({"split": "training"}, r"split 'training' is not one of train, val, test"),
    ],
)
def test_bad_arguments_are_usage_errors_that_say_what_is_allowed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        select(_metadata(), MANIFEST, **kwargs)


def test_image_kinds_and_what_readers_accept() -> None:
    assert image_column("full") == "image"
    assert image_column("small") == "image_small"
    with pytest.raises(UsageError, match=r"image='thumb': use 'full' .* or 'small'"):
        image_column("thumb")
    assert split_of(Selection("val")) == "val"
    assert split_of(None) is None
    with pytest.raises(UsageError, match=r"expected a split name .* got int"):
        split_of(3)  # type: ignore[arg-type]


def test_label_columns_follow_the_manifest() -> None:
    assert label_columns(MANIFEST)[11] == "pleural_thickening"
    assert label_columns(MANIFEST)[-1] == "no_finding"
    assert label_columns({"label_columns": ["a", "b"], "label_vector_order": ["X"]}) == ("a", "b")
