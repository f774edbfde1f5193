"""The real dataset's quirks, sprinkled over a synthetic plan when ``quirks=True``.

Each kind hits ``max(minimum, round(rate * images))`` rows or images (fewer if too few qualify).
Row quirks go to distinct rows; image-mode quirks to distinct images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.dev.synth.metadata import Record
from pipeline.nih import NO_FINDING

#: kind -> (rate, minimum count).  The CSV-level quirk (header without trailing comma) is always 1.
QUIRK_RATES: dict[str, tuple[float, int]] = {
    "rgba_image": (0.005, 2),
    "la_image": (0.002, 1),
    "impossible_age": (0.00015, 2),  # 16 in the real 112,120
    "no_finding_underscore": (0.01, 2),
    "age_years_string": (0.05, 3),
    "age_months_string": (0.0, 1),
    "age_days_string": (0.0, 1),
    "pixel_spacing_float_noise": (0.02, 2),
    "zero_padded_follow_up": (0.02, 2),
}
HEADER_QUIRK = "header_without_trailing_comma"
IMPOSSIBLE_AGES = (*range(148, 156), *range(411, 415))


@dataclass
class QuirkPlan:
    """What the quirks change: image modes, cell overrides, and counts per kind."""

    modes: dict[int, str] = field(default_factory=dict)
    overrides: dict[int, dict[str, str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _count(kind: str, n: int, available: int) -> int:
    rate, minimum = QUIRK_RATES[kind]
    return min(available, max(minimum, round(rate * n)))


def _pick(values: tuple[int, ...], rng: np.random.Generator) -> int:
    return values[int(rng.integers(len(values)))]


def _noisy(spacing: float) -> dict[str, str]:
    text = repr(float(np.nextafter(spacing, 1.0)))  # 0.143 -> 0.14300000000000002
    return {"spacing_x": text, "spacing_y": text}


#: Row quirk kind -> the cells it rewrites.
_CELLS: dict[str, Callable[[Record, np.random.Generator], dict[str, str]]] = {
    "impossible_age": lambda r, rng: {"age": str(_pick(IMPOSSIBLE_AGES, rng))},
    "no_finding_underscore": lambda r, rng: {"labels": NO_FINDING.replace(" ", "_")},
    "age_years_string": lambda r, rng: {"age": f"{r.age:03d}Y"},
    "age_months_string": lambda r, rng: {"age": f"{int(rng.integers(1, 12)):03d}M"},
    "age_days_string": lambda r, rng: {"age": f"{int(rng.integers(1, 31)):03d}D"},
    "pixel_spacing_float_noise": lambda r, rng: _noisy(r.spacing),
    "zero_padded_follow_up": lambda r, rng: {"follow_up": f"{r.follow_up:03d}"},
}


def _eligible(kind: str, record: Record) -> bool:
    if kind == "no_finding_underscore":
        return not record.findings
    if kind == "zero_padded_follow_up":
        return record.follow_up < 100  # 3-digit padding changes nothing beyond
    return True


def plan_quirks(records: list[Record], rng: np.random.Generator) -> QuirkPlan:
    """Choose which images turn RGBA/LA and which rows get which cell quirk."""
    n = len(records)
    plan = QuirkPlan()
    images = [int(i) for i in rng.permutation(n)]
    for kind, mode in (("rgba_image", "RGBA"), ("la_image", "LA")):
        k = _count(kind, n, len(images))
        chosen, images = images[:k], images[k:]
        plan.modes.update((i, mode) for i in chosen)
        plan.counts[kind] = len(chosen)
    free = [int(i) for i in rng.permutation(n)]
    for kind in QUIRK_RATES:
        if kind in ("rgba_image", "la_image"):
            continue
        eligible = [i for i in free if _eligible(kind, records[i])]
        chosen = eligible[: _count(kind, n, len(eligible))]
        for i in chosen:
            plan.overrides[i] = _CELLS[kind](records[i], rng)
        taken = set(chosen)
        free = [i for i in free if i not in taken]
        plan.counts[kind] = len(chosen)
    plan.counts[HEADER_QUIRK] = 1
    plan.counts = dict(sorted(plan.counts.items()))
    return plan
