"""The dataset card's two plots, drawn with Pillow (no plotting dependency): PNG bytes out.

- ``label_prevalence.png``: horizontal bars, one group per label, one bar per split (share of images).
- ``age_histogram.png``: images per decade of age, stacked by split.

Both are deterministic for the same input, so a rerun of a release writes byte-identical files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

SPLIT_COLOURS: dict[str, tuple[int, int, int]] = {
    "train": (76, 114, 176),
    "val": (221, 132, 82),
    "test": (85, 168, 104),
}
AGE_BINS: tuple[tuple[int, int], ...] = tuple((lo, lo + 10) for lo in range(0, 100, 10))
_INK, _GRID, _WHITE = (40, 40, 40), (222, 222, 222), (255, 255, 255)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def nice_step(top: float, ticks: int = 5) -> float:
    """A round axis step (1, 2 or 5 times a power of ten) giving about ``ticks`` gridlines up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _legend(draw: ImageDraw.ImageDraw, splits: Sequence[str], x: int, y: int) -> None:
    font = _font(14)
    for split in splits:
        draw.rectangle((x, y + 2, x + 14, y + 16), fill=SPLIT_COLOURS.get(split, _INK))
        draw.text((x + 20, y), split, fill=_INK, font=font)
        x += 30 + int(draw.textlength(split, font=font)) + 16


def label_prevalence_png(prevalence: Mapping[str, Mapping[str, float]], labels: Sequence[str]) -> bytes:
    """Bars of the share of images carrying each label, per split.

    Args:
        prevalence: split -> label -> share of that split's images (0..1).
        labels: The labels, in display order.
    """
    splits = [s for s in SPLIT_COLOURS if s in prevalence]
    left, top, bar, gap, width = 190, 70, 9, 10, 960
    height = top + len(labels) * (len(splits) * bar + gap) + 50
    image = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((left, 12), "Label prevalence per split (share of images)", fill=_INK, font=_font(18))
    _legend(draw, splits, left, 40)
    peak = max([prevalence[s].get(label, 0.0) for s in splits for label in labels] + [0.01])
    step = nice_step(peak * 100)
    axis_top = math.ceil(peak * 100 / step) * step
    plot_w = width - left - 60
    bottom = height - 40
    for k in range(round(axis_top / step) + 1):
        x = left + int(plot_w * k * step / axis_top)
        draw.line((x, top - 6, x, bottom), fill=_GRID)
        draw.text((x - 8, bottom + 6), f"{k * step:g}%", fill=_INK, font=_font(12))
    y = top
    for label in labels:
        draw.text((12, y + (len(splits) * bar) // 2 - 8), label.replace("_", " "), fill=_INK, font=_font(14))
        for split in splits:
            share = prevalence[split].get(label, 0.0) * 100
            draw.rectangle((left, y, left + int(plot_w * share / axis_top), y + bar - 2), fill=SPLIT_COLOURS[split])
            y += bar
        y += gap
    draw.line((left, top - 6, left, bottom), fill=_INK)
    return _png(image)


def age_bins(ages: Sequence[float]) -> list[int]:
    """Count ages per decade (0-9, ..., 80-89, 90 and over); missing ages are not counted."""
    counts = [0] * len(AGE_BINS)
    for age in ages:
        if age is None or math.isnan(age) or age < 0:
            continue
        counts[min(int(age // 10), len(AGE_BINS) - 1)] += 1
    return counts


def age_histogram_png(ages_by_split: Mapping[str, Sequence[float]]) -> bytes:
    """Images per decade of age, stacked by split."""
    splits = [s for s in SPLIT_COLOURS if s in ages_by_split]
    counts = {s: age_bins(ages_by_split[s]) for s in splits}
    totals = [sum(counts[s][i] for s in splits) for i in range(len(AGE_BINS))]
    width, height, left, top, bottom = 900, 460, 70, 70, 400
    image = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((left, 12), "Patient age at the time of the image (images per decade)", fill=_INK, font=_font(18))
    _legend(draw, splits, left, 40)
    step = nice_step(max([*totals, 1]))
    axis_top = math.ceil(max([*totals, 1]) / step) * step
    for k in range(round(axis_top / step) + 1):
        y = bottom - int((bottom - top) * k * step / axis_top)
        draw.line((left, y, width - 20, y), fill=_GRID)
        draw.text((8, y - 8), f"{k * step:g}", fill=_INK, font=_font(12))
    slot = (width - 20 - left) // len(AGE_BINS)
    for i, (lo, hi) in enumerate(AGE_BINS):
        x0, base = left + i * slot + 6, bottom
        for split in splits:
            h = int((bottom - top) * counts[split][i] / axis_top)
            if h:
                draw.rectangle((x0, base - h, x0 + slot - 12, base), fill=SPLIT_COLOURS[split])
            base -= h
        name = f"{lo}+" if i == len(AGE_BINS) - 1 else f"{lo}-{hi - 1}"
        draw.text((x0 + 4, bottom + 8), name, fill=_INK, font=_font(13))
    draw.line((left, bottom, width - 20, bottom), fill=_INK)
    draw.text((left, bottom + 32), "age in years; missing or flagged ages are not shown", fill=_INK, font=_font(12))
    return _png(image)
