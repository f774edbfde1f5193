"""The dataset card's plots, drawn with Pillow (no plotting dependency): PNG bytes out.

Each plot is one chart of horizontal bars: a group of bars per category, one bar per split, each bar the share of
its own split's images (so val and test compare with train whatever their size) with the image count written
beside it. A zero is drawn as a hollow stub marked ``0``, so an absent label is seen, not missed.

- ``label_prevalence.png``: one group per label (its column name).
- ``age_histogram.png``: one group per decade of age (share of each split's images with a known age).
- ``sex_and_view.png``: one group per sex and per view position.

All are deterministic for the same input, so a rerun of a release writes byte-identical files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from pipeline import nih
from pipeline.plan.split import SPLITS

__all__ = [
    "AGE_BINS",
    "AGE_PLOT",
    "BAR",
    "BAR_TOP",
    "LABEL_COLUMNS",
    "LABEL_PLOT",
    "LEFT",
    "SEX_VIEW_PLOT",
    "SPLIT_COLOURS",
    "WIDTH",
    "age_bins",
    "age_histogram_png",
    "bar_text",
    "bars_png",
    "label_counts",
    "label_prevalence_png",
    "nice_step",
    "plot_files",
    "sex_view_png",
]

LABEL_PLOT = "card/label_prevalence.png"
AGE_PLOT = "card/age_histogram.png"
SEX_VIEW_PLOT = "card/sex_and_view.png"
#: Each label's one name in the release (its column), in label-vector order -> NIH's spelling.
LABEL_COLUMNS: dict[str, str] = {nih.finding_column(label): label for label in nih.LABELS}

SPLIT_COLOURS: dict[str, tuple[int, int, int]] = {
    "train": (76, 114, 176),
    "val": (221, 132, 82),
    "test": (85, 168, 104),
}
AGE_BINS: tuple[tuple[int, int], ...] = tuple((lo, lo + 10) for lo in range(0, 100, 10))
#: Layout: image width, where the bars start, the first bar's top, a bar's height, the gap between groups.
WIDTH, LEFT, BAR_TOP, BAR, GAP = 960, 200, 76, 17, 12
#: Room right of the longest bar for its text, and the width of a zero's hollow stub.
_TEXT_ROOM, _STUB = 150, 8
_INK, _GRID, _WHITE = (40, 40, 40), (222, 222, 222), (255, 255, 255)
#: One bar: the share of its split's images (0..1) and the image count.
Bar = tuple[float, int]


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


def bar_text(share: float, count: int) -> str:
    """What is written beside a bar: its share and image count (``12.5% (1,234)``), or ``0`` for none."""
    if count == 0:
        return "0"
    pct = 100 * share
    return f"{'<0.1' if pct < 0.1 else f'{pct:.1f}'}% ({count:,})"


def _legend(draw: ImageDraw.ImageDraw, splits: Sequence[str], x: int, y: int) -> None:
    font = _font(15)
    for split in splits:
        draw.rectangle((x, y + 2, x + 15, y + 17), fill=SPLIT_COLOURS.get(split, _INK))
        draw.text((x + 21, y), split, fill=_INK, font=font)
        x += 40 + int(draw.textlength(split, font=font))


def _axis(draw: ImageDraw.ImageDraw, axis_top: float, step: float, bottom: int) -> None:
    plot_w = WIDTH - LEFT - _TEXT_ROOM
    for k in range(round(axis_top / step) + 1):
        x = LEFT + int(plot_w * k * step / axis_top)
        draw.line((x, BAR_TOP - 6, x, bottom), fill=_GRID)
        draw.text((x - 10, bottom + 6), f"{k * step:g}%", fill=_INK, font=_font(13))


def _bar(draw: ImageDraw.ImageDraw, y: int, length: int, colour: tuple[int, int, int], text: str) -> None:
    """One bar from the axis; a zero (``length`` < 0) is a hollow stub of the split's colour."""
    if length < 0:
        draw.rectangle((LEFT, y, LEFT + _STUB, y + BAR - 3), outline=colour, fill=_WHITE, width=2)
        length = _STUB
    else:
        draw.rectangle((LEFT, y, LEFT + max(length, 2), y + BAR - 3), fill=colour)
    draw.text((LEFT + max(length, 2) + 6, y + 1), text, fill=_INK, font=_font(13))


def bars_png(title: str, groups: Sequence[tuple[str, Mapping[str, Bar]]], splits: Sequence[str], note: str) -> bytes:
    """A chart of horizontal bars: per group its name, then one bar per split with its share and count.

    Args:
        title: The chart's title.
        groups: (group name, split -> (share 0..1, image count)); a split missing from a group is a zero.
        splits: The splits drawn, in order (each has a colour in :data:`SPLIT_COLOURS`).
        note: A line under the axis saying what the shares are of.
    """
    bottom = BAR_TOP + len(groups) * (len(splits) * BAR + GAP)
    image = Image.new("RGB", (WIDTH, bottom + 60), _WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((12, 12), title, fill=_INK, font=_font(19))
    _legend(draw, splits, LEFT, 44)
    peak = max([bars.get(s, (0.0, 0))[0] for _, bars in groups for s in splits] + [0.01]) * 100
    step = nice_step(peak)
    axis_top = math.ceil(peak / step) * step
    _axis(draw, axis_top, step, bottom)
    plot_w, y = WIDTH - LEFT - _TEXT_ROOM, BAR_TOP
    for name, bars in groups:
        draw.text((12, y + (len(splits) * BAR) // 2 - 9), name, fill=_INK, font=_font(15))
        for split in splits:
            share, count = bars.get(split, (0.0, 0))
            length = int(plot_w * share * 100 / axis_top) if count else -1
            _bar(draw, y, length, SPLIT_COLOURS[split], bar_text(share, count))
            y += BAR
        y += GAP
    draw.line((LEFT, BAR_TOP - 6, LEFT, bottom), fill=_INK)
    draw.text((LEFT, bottom + 30), note, fill=_INK, font=_font(13))
    return _png(image)


def _splits(present: Mapping[str, object]) -> list[str]:
    return [s for s in SPLIT_COLOURS if s in present]


def label_prevalence_png(
    counts: Mapping[str, Mapping[str, int]], images: Mapping[str, int], labels: Sequence[str]
) -> bytes:
    """Bars of the share of each split's images carrying each label, with the counts.

    Args:
        counts: split -> label -> images of that split carrying the label.
        images: split -> images of the split.
        labels: The labels, in display order (as the counts name them).
    """
    splits = _splits(counts)
    groups = [
        (label, {s: (counts[s].get(label, 0) / max(images.get(s, 0), 1), counts[s].get(label, 0)) for s in splits})
        for label in labels
    ]
    note = "share of each split's images carrying the label (image count in brackets)"
    return bars_png("Label prevalence per split", groups, splits, note)


def age_bins(ages: Sequence[float]) -> list[int]:
    """Count ages per decade (0-9, ..., 80-89, 90 and over); missing ages are not counted."""
    counts = [0] * len(AGE_BINS)
    for age in ages:
        if age is None or math.isnan(age) or age < 0:
            continue
        counts[min(int(age // 10), len(AGE_BINS) - 1)] += 1
    return counts


def age_histogram_png(ages_by_split: Mapping[str, Sequence[float]]) -> bytes:
    """Per decade of age, the share of each split's images with a known age (counts beside); NaN ages are missing."""
    splits = _splits(ages_by_split)
    counts = {s: age_bins(ages_by_split[s]) for s in splits}
    known = {s: sum(counts[s]) for s in splits}
    groups = []
    for i, (lo, hi) in enumerate(AGE_BINS):
        name = f"{lo}+ years" if i == len(AGE_BINS) - 1 else f"{lo}-{hi - 1} years"
        groups.append((name, {s: (counts[s][i] / max(known[s], 1), counts[s][i]) for s in splits}))
    missing = ", ".join(f"{s} {len(ages_by_split[s]) - known[s]:,}" for s in splits)
    note = f"share of each split's images with a known age; without an age (not shown): {missing}"
    return bars_png("Patient age at the time of the image, per split", groups, splits, note)


def sex_view_png(
    sex: Mapping[str, Mapping[str, int]], view: Mapping[str, Mapping[str, int]], images: Mapping[str, int]
) -> bytes:
    """Bars of the share of each split's images per patient sex and per view position, with the counts.

    Args:
        sex: split -> sex as recorded (``F``, ``M``) -> images.
        view: split -> view position (``AP``, ``PA``) -> images.
        images: split -> images of the split.
    """
    splits = _splits(images)
    groups = []
    for kind, per_split in (("sex", sex), ("view", view)):
        values = sorted({v for s in splits for v in per_split.get(s, {})})
        for value in values:
            bars = {s: per_split.get(s, {}).get(value, 0) for s in splits}
            groups.append((f"{kind}: {value}", {s: (n / max(images[s], 1), n) for s, n in bars.items()}))
    note = "share of each split's images (image count in brackets)"
    return bars_png("Patient sex and view position per split", groups, splits, note)


def label_counts(meta: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Images carrying each label per split, by label column (``pleural_thickening``), from the metadata rows."""
    return {s: {col: int(meta.loc[meta["split"] == s, col].sum()) for col in LABEL_COLUMNS} for s in SPLITS}


def plot_files(stats: Mapping[str, Mapping[str, Any]], meta: pd.DataFrame) -> dict[str, bytes]:
    """The card's three plots (release-relative path -> PNG bytes) from the split statistics and the metadata rows."""
    images = {s: int(stats[s]["images"]) for s in SPLITS}
    ages = {s: [float(a) for a in meta.loc[meta["split"] == s, "age_years"].astype(float)] for s in SPLITS}
    sex, view = ({s: stats[s][key] for s in SPLITS} for key in ("sex", "view_position"))
    return {
        LABEL_PLOT: label_prevalence_png(label_counts(meta), images, list(LABEL_COLUMNS)),
        AGE_PLOT: age_histogram_png(ages),
        SEX_VIEW_PLOT: sex_view_png(sex, view, images),
    }
