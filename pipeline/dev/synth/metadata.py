"""Synthetic metadata: patients, follow-ups, labels, the patient-disjoint split, bounding boxes, quirks.

Everything here is drawn from one ``numpy`` generator per purpose, seeded from ``(seed, stream)``,
and iterates over lists in a fixed order, so the same seed always gives the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.nih import BBOX_LABELS, FINDINGS, IMAGE_SIDE, LABEL_PREVALENCE, NO_FINDING

#: The original 2017 header, trailing comma included (data rows have 11 fields, the header 12).
HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
#: The variant without the trailing comma (written when quirks are on).
HEADER_NO_TRAILING_COMMA = HEADER_2017.removesuffix(",")
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
#: Data_Entry spells it Infiltration, the bounding-box list Infiltrate.
BBOX_SPELLING = {"Infiltration": "Infiltrate"}

TEST_SHARE = 0.23
BBOX_SHARE = 0.01
MALE_SHARE = 0.56
PA_SHARE = 0.60
MAX_FOLLOW_UPS = 184  # the real dataset's most-imaged patient
#: Chance that a follow-up repeats the previous image's labels (findings persist between visits).
REPEAT_LABELS = 0.5
#: Number of findings on an image that has any: 1, 2, 3, 4, 5.
FINDING_COUNT_WEIGHTS = (0.60, 0.26, 0.10, 0.03, 0.01)
#: (width, height or 0 for "varies", pixel spacing, weight): the common detector formats of the real file.
ORIGINAL_FORMATS: tuple[tuple[int, int, float, float], ...] = (
    (2500, 2048, 0.168, 0.30),
    (2992, 2991, 0.143, 0.17),
    (3056, 2544, 0.139, 0.12),
    (2500, 2048, 0.171, 0.08),
    (2048, 2500, 0.168, 0.08),
    (2048, 2500, 0.171, 0.06),
    (2544, 3056, 0.139, 0.03),
    (0, 2991, 0.143, 0.06),
)
_STREAM_RECORDS, _STREAM_SPLIT, _STREAM_BOXES = 11, 12, 13


@dataclass(frozen=True)
class Record:
    """One image's metadata row."""

    patient: int
    follow_up: int
    age: int
    sex: str
    view: str
    width: int
    height: int
    spacing: float
    findings: tuple[str, ...]  # alphabetical; empty means No Finding

    @property
    def name(self) -> str:
        """The image file name, ``<8-digit patient>_<3-digit follow-up>.png``."""
        return f"{self.patient:08d}_{self.follow_up:03d}.png"

    @property
    def labels(self) -> str:
        """The ``Finding Labels`` cell."""
        return "|".join(self.findings) or NO_FINDING


@dataclass(frozen=True)
class Box:
    """One bounding box, in the 1024-pixel space of the published image."""

    name: str
    label: str  # BBox-list spelling
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Plan:
    """Everything about the synthetic dataset except the pixels."""

    records: list[Record]  # sorted by image name
    test: frozenset[str]
    boxes: list[Box]
    modes: dict[int, str] = field(default_factory=dict)  # record index -> "RGBA"/"LA" (quirks only)
    overrides: dict[int, dict[str, str]] = field(default_factory=dict)  # index -> column -> cell text
    quirks: dict[str, int] = field(default_factory=dict)


def stream_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one purpose (``stream``) of a seed."""
    return np.random.default_rng([seed, stream])


def patient_sizes(rng: np.random.Generator, n: int) -> list[int]:
    """Images per patient: heavy-tailed (about half have one, a few have tens), mean ~3.6, sum ``n``."""
    cap = max(1, min(MAX_FOLLOW_UPS, n // 10))
    sizes: list[int] = []
    total = 0
    while total < n:
        k = min(cap, n - total, int(np.ceil(rng.lognormal(0.04, 1.5))))
        sizes.append(max(1, k))
        total += sizes[-1]
    return sizes


def _base_age(rng: np.random.Generator) -> int:
    if rng.random() < 0.05:
        return int(rng.integers(1, 18))
    return int(np.clip(round(rng.normal(47.5, 15.0)), 18, 95))


def _findings(rng: np.random.Generator) -> tuple[str, ...]:
    if rng.random() < LABEL_PREVALENCE[NO_FINDING]:
        return ()
    weights = np.array([LABEL_PREVALENCE[f] for f in FINDINGS])
    k = 1 + int(rng.choice(len(FINDING_COUNT_WEIGHTS), p=FINDING_COUNT_WEIGHTS))
    picked = rng.choice(len(FINDINGS), size=k, replace=False, p=weights / weights.sum())
    return tuple(sorted(FINDINGS[int(i)] for i in picked))


def _original_format(rng: np.random.Generator) -> tuple[int, int, float]:
    weights = np.array([f[3] for f in ORIGINAL_FORMATS])
    width, height, spacing, _ = ORIGINAL_FORMATS[int(rng.choice(len(weights), p=weights / weights.sum()))]
    return (width or int(rng.integers(2400, 2991))), height, spacing


def _patient_records(rng: np.random.Generator, patient: int, count: int) -> list[Record]:
    sex = "M" if rng.random() < MALE_SHARE else "F"
    age = float(_base_age(rng))
    findings: tuple[str, ...] = ()
    records = []
    for follow_up in range(count):
        if follow_up == 0 or rng.random() >= REPEAT_LABELS:
            findings = _findings(rng)
        width, height, spacing = _original_format(rng)
        view = "PA" if rng.random() < PA_SHARE else "AP"
        years = min(95, int(age))
        records.append(Record(patient, follow_up, years, sex, view, width, height, spacing, findings))
        age += rng.exponential(min(0.3, 5.0 / count))  # a patient's films span a few years at most
    return records


def make_records(seed: int, n: int) -> list[Record]:
    """``n`` image records of patients numbered upwards from 1 (small gaps allowed), sorted by name."""
    rng = stream_rng(seed, _STREAM_RECORDS)
    records: list[Record] = []
    patient = 0
    for count in patient_sizes(rng, n):
        patient += 1 + (int(rng.geometric(0.5)) if rng.random() < 0.03 else 0)
        records.extend(_patient_records(rng, patient, count))
    return records


def split_test(seed: int, records: list[Record]) -> frozenset[str]:
    """Pick whole patients for the test list until it holds about 23% of the images."""
    by_patient: dict[int, list[str]] = {}
    for record in records:
        by_patient.setdefault(record.patient, []).append(record.name)
    patients = sorted(by_patient)
    order = stream_rng(seed, _STREAM_SPLIT).permutation(len(patients))
    target = round(TEST_SHARE * len(records))
    test: list[str] = []
    for i in order:
        names = by_patient[patients[int(i)]]
        if len(test) + len(names) <= target:
            test.extend(names)
    if not test and len(patients) > 1:
        test.extend(by_patient[min(patients, key=lambda p: len(by_patient[p]))])
    return frozenset(test)


def _box(rng: np.random.Generator, name: str, label: str) -> Box:
    if label == "Cardiomegaly":
        w, h = rng.uniform(380, 520), rng.uniform(220, 350)
        x, y = rng.uniform(300, 1000 - w), rng.uniform(380, 1000 - h)
    else:
        low, high = {"Nodule": (25.0, 90.0), "Mass": (80.0, 300.0)}.get(label, (80.0, 360.0))
        w, h = rng.uniform(low, high), rng.uniform(low, high)
        x, y = rng.uniform(20, IMAGE_SIDE - 20 - w), rng.uniform(100, 940 - h)
    return Box(name, BBOX_SPELLING.get(label, label), float(x), float(y), float(w), float(h))


def make_boxes(seed: int, records: list[Record], test: frozenset[str]) -> list[Box]:
    """Boxes on about 1% of the images, all in the test list, each labelled with one of its findings."""
    rng = stream_rng(seed, _STREAM_BOXES)
    candidates = [r for r in records if r.name in test and set(r.findings) & set(BBOX_LABELS)]
    count = min(len(candidates), max(1, round(BBOX_SHARE * len(records))))
    boxes: list[Box] = []
    for i in sorted(int(i) for i in rng.choice(len(candidates), size=count, replace=False)):
        record = candidates[i]
        labels = [f for f in record.findings if f in BBOX_LABELS]
        chosen = rng.permutation(len(labels))[: 2 if rng.random() < 0.1 else 1]
        boxes.extend(_box(rng, record.name, labels[int(j)]) for j in chosen)
    return sorted(boxes, key=lambda b: (b.label, b.name))


def _cells(record: Record) -> dict[str, str]:
    return {
        "name": record.name,
        "labels": record.labels,
        "follow_up": str(record.follow_up),
        "patient": str(record.patient),
        "age": str(record.age),
        "sex": record.sex,
        "view": record.view,
        "width": str(record.width),
        "height": str(record.height),
        "spacing_x": repr(record.spacing),
        "spacing_y": repr(record.spacing),
    }


def data_entry_text(plan: Plan, quirks: bool) -> str:
    """``Data_Entry_2017.csv``: the 2017 header (no trailing comma if ``quirks``), a row per image."""
    lines = [HEADER_NO_TRAILING_COMMA if quirks else HEADER_2017]
    for index, record in enumerate(plan.records):
        cells = _cells(record)
        cells.update(plan.overrides.get(index, {}))
        lines.append(",".join(cells.values()))
    return "\n".join(lines) + "\n"


def bbox_text(boxes: list[Box]) -> str:
    """``BBox_List_2017.csv``: its real header with three empty columns, and a blank last line."""
    rows = [f"{b.name},{b.label},{b.x:.15g},{b.y:.15g},{b.w:.15g},{b.h:.15g}" for b in boxes]
    return "\n".join([BBOX_HEADER, *rows]) + "\n\n"


def list_text(names: list[str]) -> str:
    """A split list: one file name a line, sorted."""
    return "".join(f"{name}\n" for name in sorted(names))
