"""The dataset card's two plots: real PNG files of the size the card lays out, drawn the same way every time."""

from __future__ import annotations

import io

from PIL import Image

from pipeline import nih
from pipeline.plan.split import SPLITS
from pipeline.publish import card_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel: a truncated or corrupt file fails here
    return image


def _prevalence(splits: tuple[str, ...] = SPLITS) -> dict[str, dict[str, float]]:
    return {s: {label: 0.1 * i for i, label in enumerate(nih.LABELS)} for s in splits}


def test_plots_are_deterministic_pngs() -> None:
    prevalence = _prevalence()
    first = card_plots.label_prevalence_png(prevalence, nih.LABELS)
    assert first == card_plots.label_prevalence_png(prevalence, nih.LABELS)
    histogram = card_plots.age_histogram_png({"train": [1.0, 15.0, 95.0, float("nan")], "val": [], "test": [40.0]})
    for png in (first, histogram):
        assert Image.open(io.BytesIO(png)).format == "PNG"


def test_label_prevalence_is_a_png_with_one_row_of_bars_per_label_and_split() -> None:
    three = _open(card_plots.label_prevalence_png(_prevalence(), nih.LABELS))
    assert (three.format, three.mode) == ("PNG", "RGB")
    assert three.size == (960, 675)  # 15 labels x (3 splits x 9 px + 10 px gap) + title, legend and axis
    one = _open(card_plots.label_prevalence_png(_prevalence(("train",)), nih.LABELS))
    assert one.size == (960, 405), "a split that is absent takes no room"


def test_label_bars_are_drawn_in_the_colour_of_their_split() -> None:
    image = _open(card_plots.label_prevalence_png({"train": dict.fromkeys(nih.LABELS, 0.5)}, nih.LABELS))
    colours = {colour for _count, colour in image.getcolors(maxcolors=1 << 16) or []}
    assert card_plots.SPLIT_COLOURS["train"] in colours
    assert card_plots.SPLIT_COLOURS["test"] not in colours


def test_age_histogram_is_a_fixed_size_png_even_without_any_age() -> None:
    cases: list[dict[str, list[float]]] = [{"train": [34.0, 71.5], "val": [12.0], "test": []}, {"train": []}]
    for ages in cases:
        image = _open(card_plots.age_histogram_png(ages))
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (900, 460))


def test_age_bins_put_ninety_and_over_together_and_skip_missing() -> None:
    assert card_plots.age_bins([0.5, 9.9, 10.0, 90.0, 104.0, float("nan")]) == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]


def test_axis_steps_are_round_numbers() -> None:
    assert [card_plots.nice_step(top) for top in (7, 42, 95, 1200)] == [2.0, 10.0, 20.0, 500.0]
