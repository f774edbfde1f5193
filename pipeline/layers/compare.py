"""A layer against the release's primary labels, for the card: coverage, 2x2 agreement, relabels and the layer's sets.

:func:`compare_layer` reads the release's metadata frame (``metadata.parquet`` as pandas: the primary columns and
one column per layer id, a dict where the layer covers the image and None where it does not) and returns a
:class:`LayerComparison`: images covered per split; for each finding the layer shares with the primary labels the
2x2 table over the covered images where the layer gives a value (agreement rate and Cohen's kappa); for a box layer,
per box label, the images it boxes and how many of them the primary labels say lack the finding; for a label
version, the images whose label set differs; and how the layer's own sets (Google's ``Set Id``) fall across the
release's splits. :func:`render_section` turns it into the card's Markdown; both are deterministic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import pandas as pd

from pipeline import nih
from pipeline.curate.metadata import BBOX_LABEL_ALIASES
from pipeline.layers.schema import Layer

__all__ = [
    "EXPERT_COUNTERPARTS",
    "RELABEL_EXAMPLES",
    "SET_FIELDS",
    "Agreement",
    "BoxFinding",
    "LayerComparison",
    "Relabel",
    "SetCrosstab",
    "SplitCoverage",
    "cohen_kappa",
    "compare_layer",
    "compare_layers",
    "render_section",
]

#: The release's splits in card order (``pipeline.plan.split.SPLITS``; layers may not import plan).
SPLIT_ORDER = ("train", "val", "test")
#: Primary bool column -> its label as NIH spells it (the 14 findings and ``no_finding``).
PRIMARY_COLUMNS: dict[str, str] = {nih.finding_column(label): label for label in nih.LABELS}
#: Google's expert fields -> the primary columns they are compared with (OR of several); () has no counterpart.
EXPERT_COUNTERPARTS: dict[str, tuple[str, ...]] = {
    "fracture": (),
    "pneumothorax": ("pneumothorax",),
    "airspace_opacity": (),
    "nodule_or_mass": ("nodule", "mass"),
}
#: A generic layer's string field with one of these names is its own set (crosstabbed against the splits).
SET_FIELDS = ("set", "set_id", "split")
RELABEL_EXAMPLES = 10
NO_SET = "(none)"


@dataclass(frozen=True)
class SplitCoverage:
    """Images of one split the layer covers, of ``split_images``; ``rows``: its rows there (boxes for a box layer)."""

    split: str
    images: int
    split_images: int
    rows: int


@dataclass(frozen=True)
class Agreement:
    """The 2x2 table of one layer field against the primary labels (``primary``: columns OR-ed together)."""

    field: str
    primary: tuple[str, ...]
    both: int
    layer_only: int
    primary_only: int
    neither: int

    @property
    def images(self) -> int:
        """Images compared: covered by the layer with a value for this field."""
        return self.both + self.layer_only + self.primary_only + self.neither

    @property
    def agreement(self) -> float | None:
        """Share of compared images where the layer and the primary labels agree (None: nothing compared)."""
        return float(Fraction(self.both + self.neither, self.images)) if self.images else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa (None where undefined: nothing compared, or expected agreement 1)."""
        return cohen_kappa(self.both, self.layer_only, self.primary_only, self.neither)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form, with the derived figures."""
        return {**asdict(self), "images": self.images, "agreement": self.agreement, "kappa": self.kappa}


@dataclass(frozen=True)
class BoxFinding:
    """Images with a layer box of ``label``; ``without_primary``: of those, how many lack it in the primary labels
    (None: the label is not a primary finding)."""

    label: str
    images: int
    without_primary: int | None


@dataclass(frozen=True)
class Relabel:
    """An image whose label set in a label-version layer differs from the primary's (labels sorted, ``|``-joined)."""

    image_index: str
    primary: str
    layer: str


@dataclass(frozen=True)
class SetCrosstab:
    """Covered images per (layer set, release split): ``rows`` holds (set value, counts in ``splits`` order)."""

    field: str
    splits: tuple[str, ...]
    rows: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class LayerComparison:
    """What the card says about one layer beside the primary labels (:func:`compare_layer`)."""

    layer: Layer
    coverage: tuple[SplitCoverage, ...]
    agreements: tuple[Agreement, ...] = ()
    no_counterpart: tuple[str, ...] = ()
    boxes: tuple[BoxFinding, ...] = ()
    relabelled: int | None = None
    relabel_examples: tuple[Relabel, ...] = ()
    sets: SetCrosstab | None = None

    @property
    def images_covered(self) -> int:
        """Images of the release the layer covers."""
        return sum(c.images for c in self.coverage)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (the manifest's ``comparison`` of the layer)."""
        return {
            "layer": self.layer.id,
            "kind": self.layer.kind,
            "images_covered": self.images_covered,
            "coverage": [asdict(c) for c in self.coverage],
            "agreements": [a.to_json() for a in self.agreements],
            "no_counterpart": list(self.no_counterpart),
            "boxes": [asdict(b) for b in self.boxes],
            "relabelled": self.relabelled,
            "relabel_examples": [asdict(r) for r in self.relabel_examples],
            "sets": None if self.sets is None else asdict(self.sets),
        }


def cohen_kappa(a: int, b: int, c: int, d: int) -> float | None:
    """Cohen's kappa of a 2x2 table (a both positive, b layer only, c primary only, d both negative), computed exactly.

    None when nothing was compared or the expected agreement is 1 (every image on one side of both raters).
    """
    n = a + b + c + d
    if not n:
        return None
    observed = Fraction(a + d, n)
    expected = Fraction((a + b) * (a + c) + (c + d) * (b + d), n * n)
    return None if expected == 1 else float((observed - expected) / (1 - expected))


def _splits(meta: pd.DataFrame) -> tuple[str, ...]:
    extra = sorted(set(meta["split"].astype("str")) - set(SPLIT_ORDER))
    return (*SPLIT_ORDER, *extra)


def _covered(meta: pd.DataFrame, layer_id: str) -> pd.DataFrame:
    """The rows of images the layer covers, with its value as column ``_value`` (a dict)."""
    values = meta[layer_id] if layer_id in meta.columns else pd.Series([None] * len(meta), index=meta.index)
    mask = values.map(lambda v: isinstance(v, dict)).astype(bool)
    return meta.loc[mask].assign(_value=values[mask])


def _boxes(value: dict[str, Any]) -> list[Any]:
    """A box layer value's boxes (an array once read through pandas, or None)."""
    boxes = value.get("bboxes")
    return [] if boxes is None else list(boxes)


def _coverage(meta: pd.DataFrame, covered: pd.DataFrame, layer: Layer) -> tuple[SplitCoverage, ...]:
    sizes = meta["split"].astype("str").value_counts()
    split = covered["split"].astype("str")
    rows = covered["_value"].map(lambda v: len(_boxes(v)) if layer.kind == "boxes" else 1)
    return tuple(
        SplitCoverage(s, int((split == s).sum()), int(sizes.get(s, 0)), int(rows[split == s].sum()))
        for s in _splits(meta)
    )


def _counterparts(layer: Layer) -> dict[str, tuple[str, ...]]:
    """Each bool field -> the primary columns it is compared with (empty: no counterpart)."""
    if layer.kind == "expert_labels":
        return {f.name: EXPERT_COUNTERPARTS.get(f.name, ()) for f in layer.fields if f.type == "bool"}
    return {f.name: ((f.name,) if f.name in PRIMARY_COLUMNS else ()) for f in layer.fields if f.type == "bool"}


def _primary(covered: pd.DataFrame, columns: Sequence[str]) -> list[bool]:
    return [bool(v) for v in covered[list(columns)].fillna(False).astype(bool).any(axis=1)]


def _agreement(covered: pd.DataFrame, name: str, columns: tuple[str, ...]) -> Agreement:
    cells: Counter[tuple[bool, bool]] = Counter()
    for value, primary in zip(covered["_value"], _primary(covered, columns), strict=True):
        mine = value.get(name)
        if mine is not None and mine is not pd.NA:
            cells[(bool(mine), primary)] += 1
    both, layer_only, primary_only, neither = (
        cells[key] for key in ((True, True), (True, False), (False, True), (False, False))
    )
    return Agreement(name, columns, both, layer_only, primary_only, neither)


def _primary_column(box_label: str) -> str | None:
    """The primary column of a box label (``Infiltrate`` -> ``infiltration``), None if it is not a primary finding."""
    column = nih.finding_column(BBOX_LABEL_ALIASES.get(box_label, box_label))
    return column if column in PRIMARY_COLUMNS else None


def _box_findings(covered: pd.DataFrame) -> tuple[BoxFinding, ...]:
    images: Counter[str] = Counter()
    lacking: Counter[str] = Counter()
    for _, row in covered.iterrows():
        for label in sorted({str(box["label"]) for box in _boxes(row["_value"])}):
            images[label] += 1
            column = _primary_column(label)
            if column is not None and not bool(row[column]):
                lacking[label] += 1
    return tuple(
        BoxFinding(label, images[label], lacking[label] if _primary_column(label) else None) for label in sorted(images)
    )


def _label_text(labels: Iterable[Any]) -> str:
    return "|".join(sorted(str(label) for label in labels))


def _relabels(covered: pd.DataFrame) -> list[Relabel]:
    found = []
    for name, primary, value in zip(covered["image_index"], covered["labels"], covered["_value"], strict=True):
        mine = value.get("labels")
        if mine is not None and set(map(str, mine)) != set(map(str, primary)):
            found.append(Relabel(str(name), _label_text(primary), _label_text(mine)))
    return sorted(found, key=lambda r: r.image_index)


def _set_field(layer: Layer) -> str | None:
    if layer.kind == "expert_labels":
        return "set_id"
    if layer.kind == "generic":
        return next((f.name for f in layer.fields if f.type == "string" and f.name in SET_FIELDS), None)
    return None


def _sets(meta: pd.DataFrame, covered: pd.DataFrame, name: str) -> SetCrosstab:
    splits = _splits(meta)
    sets = [NO_SET if v.get(name) is None else str(v.get(name)) for v in covered["_value"]]
    counts = Counter(zip(sets, covered["split"].astype("str"), strict=True))
    order = sorted(set(sets) - {NO_SET}) + ([NO_SET] if NO_SET in sets else [])
    return SetCrosstab(name, splits, tuple((s, tuple(counts[(s, split)] for split in splits)) for s in order))


def compare_layer(layer: Layer, meta: pd.DataFrame) -> LayerComparison:
    """Compare one layer with the primary labels of the release's metadata frame (see the module docstring)."""
    covered = _covered(meta, layer.id)
    pairs = _counterparts(layer)
    relabels = _relabels(covered) if layer.kind == "label_version" else None
    set_field = _set_field(layer)
    return LayerComparison(
        layer=layer,
        coverage=_coverage(meta, covered, layer),
        agreements=tuple(_agreement(covered, name, cols) for name, cols in pairs.items() if cols),
        no_counterpart=tuple(name for name, cols in pairs.items() if not cols),
        boxes=_box_findings(covered) if layer.kind == "boxes" else (),
        relabelled=None if relabels is None else len(relabels),
        relabel_examples=tuple((relabels or [])[:RELABEL_EXAMPLES]),
        sets=_sets(meta, covered, set_field) if set_field else None,
    )


def compare_layers(layers: Iterable[Layer], meta: pd.DataFrame) -> tuple[LayerComparison, ...]:
    """:func:`compare_layer` for each layer, in order (what ``CardFacts.layers`` holds)."""
    return tuple(compare_layer(layer, meta) for layer in layers)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _coverage_lines(c: LayerComparison) -> list[str]:
    boxes = c.layer.kind == "boxes"  # a box layer has rows (boxes) of its own; any other, one row per image
    rows = [
        [s.split, f"{s.images:,}", _pct(s.images, s.split_images), *([f"{s.rows:,}"] if boxes else [])]
        for s in c.coverage
    ]
    total = [f"{c.images_covered:,}", _pct(c.images_covered, sum(s.split_images for s in c.coverage))]
    rows.append(["**all**", *total, *([f"{sum(s.rows for s in c.coverage):,}"] if boxes else [])])
    return [
        "Images covered per split (the layer's column is null on every other image):",
        "",
        *_table(["split", "images covered", "share of the split", *(["boxes"] if boxes else [])], rows),
    ]


def _primary_text(columns: tuple[str, ...]) -> str:
    return " OR ".join(PRIMARY_COLUMNS[col].replace("_", " ") for col in columns)


def _rates(a: Agreement) -> list[str]:
    kappa = "n/a" if a.kappa is None else f"{a.kappa:.3f}"
    return ["n/a" if a.agreement is None else f"{100 * a.agreement:.1f}%", kappa]


def _agreement_lines(c: LayerComparison) -> list[str]:
    lines: list[str] = []
    if c.agreements:
        header = ["layer field", "primary label", "both positive", "layer only", "primary only", "both negative",
                  "agreement", "Cohen's kappa"]  # fmt: skip
        rows = [
            [f"`{a.field}`", _primary_text(a.primary), f"{a.both:,}", f"{a.layer_only:,}", f"{a.primary_only:,}",
             f"{a.neither:,}", *_rates(a)]
            for a in c.agreements
        ]  # fmt: skip
        lines += [
            "",
            "Agreement with the primary labels, over the covered images where the layer gives a value (kappa is "
            "n/a where the expected agreement is 1):",
            "",
            *_table(header, rows),
        ]
    if c.no_counterpart:
        names = ", ".join(f"`{name}`" for name in c.no_counterpart)
        lines += ["", f"No primary counterpart, not compared: {names}."]
    return lines


def _box_lines(c: LayerComparison) -> list[str]:
    if not c.boxes:
        return []
    na = "n/a (not a primary finding)"
    rows = [[b.label, f"{b.images:,}", na if b.without_primary is None else f"{b.without_primary:,}"] for b in c.boxes]
    return [
        "",
        "A box layer marks positives only (no 2x2 table): images with a layer box of each finding, and how many of "
        "them lack the finding in the primary labels:",
        "",
        *_table(["box label", "images with a box", "of them without the primary label"], rows),
    ]


def _relabel_lines(c: LayerComparison) -> list[str]:
    if c.relabelled is None:
        return []
    lines = ["", f"Images whose label set differs from the primary labels: **{c.relabelled:,}**."]
    if c.relabel_examples:
        shown = "The first" if c.relabelled > len(c.relabel_examples) else "All"
        lines += ["", f"{shown} {len(c.relabel_examples)}, by image (primary -> layer):", ""]
        lines += [f"- `{r.image_index}`: `{r.primary}` -> `{r.layer}`" for r in c.relabel_examples]
    return lines


def _set_lines(c: LayerComparison) -> list[str]:
    if c.sets is None:
        return []
    rows = [[f"`{name}`" if name != NO_SET else name, *(f"{n:,}" for n in counts), f"{sum(counts):,}"]
            for name, counts in c.sets.rows]  # fmt: skip
    return [
        "",
        f"The layer's own sets (field `{c.sets.field}`) across the release's splits. Layers never move an image "
        "between splits: the split is the release's, the layer's set is kept as a field.",
        "",
        *_table([f"`{c.sets.field}`", *c.sets.splits, "all"], rows),
    ]


def render_section(c: LayerComparison) -> list[str]:
    """The card's Markdown lines comparing one layer with the primary labels (no heading; deterministic)."""
    return [*_coverage_lines(c), *_agreement_lines(c), *_box_lines(c), *_relabel_lines(c), *_set_lines(c)]
