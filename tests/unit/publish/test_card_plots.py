"""The dataset card's plots: real PNG files, drawn the same way every time, where a zero is seen and shares compare."""

from __future__ import annotations

import io

import pandas as pd
from PIL import Image

from pipeline import nih
from pipeline.plan.split import SPLITS
from pipeline.publish import card_plots
from pipeline.publish.card_plots import BAR, BAR_TOP, GAP, LEFT, SPLIT_COLOURS, WIDTH

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLUMNS = list(card_plots.LABEL_COLUMNS)


def _open(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel: a truncated or corrupt file fails here
    assert (image.format, image.mode, image.width) == ("PNG", "RGB", WIDTH)
    return image.convert("RGB")


def _bar_row(group: int, split: int, splits: int) -> int:
    """The y of the middle of one bar (the layout of :func:`card_plots.bars_png`)."""
    return BAR_TOP + group * (splits * BAR + GAP) + split * BAR + (BAR - 3) // 2


def _length(image: Image.Image, y: int, colour: tuple[int, int, int]) -> int:
    """How many pixels of the row ``y`` right of the axis have ``colour``."""
    return sum(image.getpixel((x, y)) == colour for x in range(LEFT, WIDTH))


def _counts(splits: tuple[str, ...] = SPLITS) -> dict[str, dict[str, int]]:
    return {s: {col: 10 * i for i, col in enumerate(COLUMNS)} for s in splits}


def test_plots_are_deterministic_pngs() -> None:
    images = dict.fromkeys(SPLITS, 200)
    ages = {"train": [1.0, 15.0, 95.0, float("nan")], "val": [], "test": [40.0]}
    sex, view = {s: {"F": 1, "M": 1} for s in SPLITS}, {s: {"PA": 2} for s in SPLITS}
    for draw in (
        lambda: card_plots.label_prevalence_png(_counts(), images, COLUMNS),
        lambda: card_plots.age_histogram_png(ages),
        lambda: card_plots.sex_view_png(sex, view, images),
    ):
        first = draw()
        assert first == draw()
        _open(first)


def test_label_prevalence_has_a_row_of_bars_per_label_and_split_and_an_absent_split_takes_no_room() -> None:
    three = _open(card_plots.label_prevalence_png(_counts(), dict.fromkeys(SPLITS, 200), COLUMNS))
    one = _open(card_plots.label_prevalence_png(_counts(("train",)), {"train": 200}, COLUMNS))
    assert three.height - one.height == len(COLUMNS) * 2 * BAR
    colours = {colour for _count, colour in one.getcolors(maxcolors=1 << 16) or []}
    assert SPLIT_COLOURS["train"] in colours
    assert SPLIT_COLOURS["test"] not in colours


def test_a_zero_is_a_visible_stub_not_a_missing_bar() -> None:
    counts = {s: dict.fromkeys(COLUMNS, 50) for s in SPLITS}
    counts["val"]["hernia"] = 0
    image = _open(card_plots.label_prevalence_png(counts, dict.fromkeys(SPLITS, 100), COLUMNS))
    hernia, val = COLUMNS.index("hernia"), SPLITS.index("val")
    stub = _bar_row(hernia, val, len(SPLITS)) - (BAR - 3) // 2  # the stub's outline is on the bar's top edge
    assert SPLIT_COLOURS["val"] in {image.getpixel((x, stub)) for x in range(LEFT, LEFT + 10)}
    zero = _length(image, _bar_row(hernia, val, len(SPLITS)), SPLIT_COLOURS["val"])
    full = _length(image, _bar_row(hernia, SPLITS.index("train"), len(SPLITS)), SPLIT_COLOURS["train"])
    assert 0 < zero <= 4 < full, "the stub is a short outline, a 50% bar is long"


def test_each_bar_is_labelled_with_its_share_and_image_count() -> None:
    assert card_plots.bar_text(0.125, 1234) == "12.5% (1,234)"
    assert card_plots.bar_text(0.0004, 1) == "<0.1% (1)"
    assert card_plots.bar_text(0.0, 0) == "0"
    image = _open(card_plots.label_prevalence_png({"train": dict.fromkeys(COLUMNS, 10)}, {"train": 20}, COLUMNS))
    y = _bar_row(0, 0, 1)
    end = LEFT + _length(image, y, SPLIT_COLOURS["train"])
    right = [image.getpixel((x, y - 3 + dy)) for x in range(end + 4, end + 60) for dy in range(7)]
    assert any(max(pixel) < 120 for pixel in right), "dark text beside the bar's end"


def test_age_shares_are_of_each_split_s_own_images_so_a_small_split_compares_with_train() -> None:
    ages = {"train": [45.0] * 300 + [65.0] * 100, "val": [41.0, 66.0], "test": [float("nan")] * 3 + [65.0]}
    image = _open(card_plots.age_histogram_png(ages))
    forties, sixties = 4, 6

    def length(group: int, split: str) -> int:
        return _length(image, _bar_row(group, SPLITS.index(split), len(SPLITS)), SPLIT_COLOURS[split])

    quarter = length(sixties, "train")
    assert quarter > 50
    assert abs(length(forties, "train") - 3 * quarter) <= 3, "train: 75% in the forties, 25% in the sixties"
    assert abs(length(sixties, "val") - 2 * quarter) <= 2, "val's 1 of 2 (50%) is twice train's 100 of 400"
    assert abs(length(sixties, "test") - 4 * quarter) <= 4, "test's one known age is 100% of its known ages"


def test_age_bins_put_ninety_and_over_together_and_skip_missing() -> None:
    assert card_plots.age_bins([0.5, 9.9, 10.0, 90.0, 104.0, float("nan")]) == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]


def test_sex_and_view_plot_has_a_group_per_value_with_zeros_shown() -> None:
    sex = {"train": {"F": 3, "M": 1}, "val": {"F": 1, "M": 1}, "test": {"M": 2}}
    view = {"train": {"AP": 2, "PA": 2}, "val": {"PA": 2}, "test": {"AP": 1, "PA": 1}}
    image = _open(card_plots.sex_view_png(sex, view, {"train": 4, "val": 2, "test": 2}))
    assert image.height == BAR_TOP + 4 * (3 * BAR + GAP) + 60, "sex F, sex M, view AP, view PA"
    f_train = _length(image, _bar_row(0, 0, 3), SPLIT_COLOURS["train"])
    assert abs(_length(image, _bar_row(1, 0, 3), SPLIT_COLOURS["train"]) * 3 - f_train) <= 3, "75% against 25%"
    assert 0 < _length(image, _bar_row(0, 2, 3), SPLIT_COLOURS["test"]) <= 4, "test has no F: a stub"
    assert 0 < _length(image, _bar_row(2, 1, 3), SPLIT_COLOURS["val"]) <= 4, "val has no AP: a stub"


def test_plot_files_draw_the_three_plots_from_the_metadata() -> None:
    meta = pd.DataFrame(
        {
            "split": ["train", "train", "val", "test"],
            "age_years": [30.0, None, 50.0, 70.0],
            **{col: [col == "effusion", False, col == "no_finding", False] for col in COLUMNS},
        }
    )
    stats = {
        s: {"images": int((meta["split"] == s).sum()), "sex": {"F": 1}, "view_position": {"PA": 1}} for s in SPLITS
    }
    assert card_plots.label_counts(meta)["train"]["effusion"] == 1
    assert card_plots.label_counts(meta)["val"]["no_finding"] == 1
    files = card_plots.plot_files(stats, meta)
    assert set(files) == {card_plots.LABEL_PLOT, card_plots.AGE_PLOT, card_plots.SEX_VIEW_PLOT}
    for png in files.values():
        _open(png)


def test_axis_steps_are_round_numbers() -> None:
    assert [card_plots.nice_step(top) for top in (7, 42, 95, 1200)] == [2.0, 10.0, 20.0, 500.0]
    assert nih.LABELS[-1] == "No Finding"
    assert COLUMNS[-1] == "no_finding", "the plot lists labels in label-vector order, by column name"
