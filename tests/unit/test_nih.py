"""pipeline.nih: the dataset's facts and the names its files use (image ids and archive names, ASCII only)."""

from __future__ import annotations

import pytest

from pipeline import nih

ARABIC_INDIC = "٠٠٠٠٠٠٠١_٠٠٠.png"  # U+0660.. : \d and int() take these
FULLWIDTH = "０００００００１_０００.png"  # U+FF10..
LOOK_ALIKES = [ARABIC_INDIC, FULLWIDTH, "0000000١_000.png", "00000001_00٣.png", "00000001_000.png\n"]


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_digits_are_not_image_ids(name: str) -> None:
    assert not nih.IMAGE_NAME_RE.match(name)
    assert nih.image_ids(name) is None


def test_an_ascii_image_name_gives_its_patient_and_follow_up() -> None:
    assert nih.image_ids("00030805_012.png") == (30805, 12)


def test_shard_names_take_ascii_digits_only() -> None:
    assert nih.shard_number("images_001.zip") == 1
    assert nih.shard_number("images_٠٠١.zip") is None
    assert nih.shard_number("images_001.zip\n") is None


def test_both_mirrors_archive_names_give_the_same_twelve_shards() -> None:
    zips = [nih.shard_number(name) for name in nih.ZIP_SHARD_NAMES]
    tars = [nih.shard_number(name) for name in nih.TAR_SHARD_NAMES]
    assert zips == tars == list(range(1, 13))
    assert nih.shard_number("images_013.tar") is None


def test_the_shard_sizes_add_up_to_the_documented_image_count() -> None:
    assert len(nih.SHARD_SIZES) == 12
    assert sum(nih.SHARD_SIZES) == nih.TOTAL_IMAGES == 112_120


def test_labels_are_the_fourteen_findings_and_no_finding_with_boxes_for_eight() -> None:
    assert len(nih.FINDINGS) == 14
    assert nih.LABELS[-1] == nih.NO_FINDING
    assert set(nih.BBOX_LABELS) <= set(nih.FINDINGS)
    assert len(nih.BBOX_LABELS) == 8
    assert set(nih.LABEL_PREVALENCE) == set(nih.LABELS)


@pytest.mark.parametrize(
    ("label", "column"),
    [("Pleural_Thickening", "pleural_thickening"), ("No Finding", "no_finding"), ("Mass", "mass")],
)
def test_finding_columns_are_snake_case(label: str, column: str) -> None:
    assert nih.finding_column(label) == column
