"""The dataset card of a release: ``README.md`` beside the data, with its PNG plots under ``card/``.

The card is written for a person deciding whether and how to use the release: what is in it (images
and patients per split, the full images and the small copy, label prevalence under the one name each label has in
the release beside NIH's spelling, age/sex/view), its annotation layers beside the primary labels
(coverage, agreement, relabels: :mod:`pipeline.layers.compare`), what the pipeline did about the source's
quirks, what changed since the parent release, the dataset's known limitations, and how to cite it.
It is deterministic for the same inputs (no clock, no run id), like every other file of a release.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline import options
from pipeline.layers.compare import LayerComparison, render_section
from pipeline.plan.kinds import kinds_text
from pipeline.plan.split import SPLITS
from pipeline.publish import card_plots
from pipeline.publish.card_plots import AGE_PLOT, LABEL_COLUMNS, LABEL_PLOT, SEX_VIEW_PLOT
from pipeline.publish.diff import ReleaseDiff

__all__ = ["CITATION", "LIMITATIONS", "CardFacts", "card_files", "quirk_counts", "render_card", "validation_summary"]

CITATION = """@inproceedings{wang2017chestxray8,
  title     = {ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised
               Classification and Localization of Common Thorax Diseases},
  author    = {Wang, Xiaosong and Peng, Yifan and Lu, Le and Lu, Zhiyong and Bagheri, Mohammadhadi
               and Summers, Ronald M.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {3462--3471},
  year      = {2017}
}"""
LIMITATIONS = (
    "**Labels are mined from radiology reports by NLP, not read from the images.** The dataset's authors "
    "estimate the mined labels to be about 90% accurate; expect label noise, especially for findings that are "
    "hard to tell apart on a radiograph (Infiltration, Consolidation, Pneumonia).",
    "Bounding boxes exist for about 1,000 images and only 8 of the 14 findings; most images have none.",
    "Findings are strongly imbalanced (Hernia is very rare); report per-label metrics, not only averages.",
    "AP images are mostly bedside films of sicker patients and often carry support devices: a model can learn "
    "the view or the devices instead of the finding. Compare results per view position.",
    "Patients contribute many follow-up images; splits are by patient, so never re-split by image.",
    "Ages that are impossible (over 120 years) or unreadable in the source are null in `age_years`.",
    "One hospital (NIH Clinical Center, Bethesda), images from 1992-2015: results may not transfer to other "
    "sites. Not for clinical use.",
)
CLOSING = [
    "## Known limitations",
    "",
    *[f"- {item}" for item in LIMITATIONS],
    "",
    "## Citation and licence",
    "",
    "The images and labels are public domain, courtesy of the NIH Clinical Center; there are no restrictions "
    "on their use. Please acknowledge the NIH Clinical Center as the data provider and cite:",
    "",
    "```bibtex",
    CITATION,
    "```",
]
SPLIT_MODES = {
    "official": "test = the patients of NIH's `test_list.txt`; val = a stable hash of the patient id",
    "patient-hash": "train/val/test by a seeded hash of the patient id",
}
_FAILED_KEYS = ("severity", "suite", "check", "expectation", "column", "unexpected_count", "description")


@dataclass(frozen=True)
class CardFacts:
    """Everything the card states, gathered by :func:`pipeline.publish.finish.finish`."""

    version: str
    parent: str | None
    stats: dict[str, dict[str, Any]]
    quirks: dict[str, int]
    quarantine_reasons: dict[str, int]
    metadata_notes: dict[str, int]
    validation: dict[str, Any]
    diff: ReleaseDiff | None
    provenance: dict[str, Any] = field(default_factory=dict)
    #: ``crosscheck.accounting_summary``: quarantined per kind, and references to images not in this source.
    accounting: dict[str, Any] = field(default_factory=dict)
    #: One comparison per annotation layer, in the order the run named them (``pipeline.layers.compare``).
    layers: tuple[LayerComparison, ...] = ()
    #: The manifest's ``image_bytes``: split -> {"full": bytes of ``image``, "small": bytes of ``image_small``}.
    image_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Long side of the small copy in pixels (the run's ``variant_size``); None or 0: the release has none.
    small_side: int | None = int(options.default_of("variant_size"))


NOTE_TEXT = {
    "age_days": "ages given in days (`001D`), converted to years",
    "age_months": "ages given in months (`011M`), converted to years",
    "age_suffix_years": "ages written with a unit (`058Y`), read as years",
    "age_impossible": "impossible ages (over 120 years), set to null",
    "age_unparsable": "unreadable ages, set to null",
    "no_finding_underscore": "`No_Finding` spelled with an underscore, read as `No Finding`",
    "spacing_rounded": "pixel spacings with float noise (`0.14300000000000002`), rounded",
    "follow_up_zero_padded": "follow-up numbers written zero-padded (`005`), read as integers",
}


def quirk_counts(meta: pd.DataFrame, quarantined: int) -> dict[str, int]:
    """Counts of the quirks handled, from the release's metadata rows."""
    return {
        "converted_images": int(meta["converted"].sum()),
        "flagged_ages": int(meta["age_years"].isna().sum()),
        "quarantined": quarantined,
    }


def validation_summary(results: dict[str, Any]) -> dict[str, Any]:
    """A short summary of ``validation/results.json`` (what the manifest and the card show)."""
    outcomes = results.get("outcomes", [])
    failed = [o for o in outcomes if not o.get("success")]
    return {
        "ok": bool(results.get("ok", True)),
        "expectations": len(outcomes),
        "blocking_failures": int(results.get("blocking_failures", 0)),
        "warnings": int(results.get("warnings", 0)),
        "failed": [{k: o.get(k) for k in _FAILED_KEYS} for o in failed],
        "variants": dict(results.get("variants", {})),
    }


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _splits_section(facts: CardFacts) -> list[str]:
    total = max(facts.stats["all"]["images"], 1)
    rows = [
        [s, f"{facts.stats[s]['images']:,}", f"{facts.stats[s]['patients']:,}", _pct(facts.stats[s]["images"] / total)]
        for s in SPLITS
    ]
    rows.append(["**all**", f"{facts.stats['all']['images']:,}", f"{facts.stats['all']['patients']:,}", "100%"])
    mode = str(facts.provenance.get("split_mode", ""))
    config = facts.provenance.get("config", {})
    note = (
        f"Splits are by patient (no patient is in two splits). Mode `{mode}`: {SPLIT_MODES.get(mode, mode)}; "
        f"seed {config.get('seed')}, val fraction {config.get('val_fraction')}, test fraction "
        f"{config.get('test_fraction')}. With the same settings a patient's split never changes between releases."
    )
    return ["## Images and patients per split", "", *_table(["split", "images", "patients", "share"], rows), "", note]


def _size(n: int) -> str:
    power = next((p for p in (4, 3, 2, 1) if n >= 1024**p), 0)
    return f"{n:,} B" if power == 0 else f"{n / 1024**power:.1f} {'KMGT'[power - 1]}iB"


def _images_section(facts: CardFacts) -> list[str]:
    side, full = facts.small_side, "`image` in the Parquet rows, `<id>.png` in the WebDataset shards"
    text = (
        f"Every image comes twice, both 8-bit grayscale PNG: the full image ({full}) and a small copy downsized to "
        f"{side} px on its long side (`image_small`, `<id>.small.png`). Read the small copy when {side} px is enough: "
        "it is a fraction of the bytes to fetch and decode." if side else "This release has no small copy (built "
        f"with `variant_size` off): `image_small` is null, the shards hold no `<id>.small.png`. The full image: {full}."
    )  # fmt: skip
    lines = ["## Full images and the small copy", "", text]
    sizes = {s: facts.image_bytes[s] for s in SPLITS if s in facts.image_bytes}
    if not sizes:
        return lines
    kinds = {"full": "full (`image`)", **({"small": "small (`image_small`)"} if side else {})}
    rows = [[s, f"{facts.stats[s]['images']:,}", *(_size(b.get(k, 0)) for k in kinds)] for s, b in sizes.items()]
    total = [_size(sum(b.get(k, 0) for b in sizes.values())) for k in kinds]
    rows.append(["**all**", f"{sum(facts.stats[s]['images'] for s in sizes):,}", *total])
    return [*lines, "", "PNG bytes per split:", "", *_table(["split", "images", *kinds.values()], rows)]


def _label_row(facts: CardFacts, counts: Mapping[str, Mapping[str, int]] | None, column: str) -> list[str]:
    label, cells = LABEL_COLUMNS[column], []
    for s in SPLITS:
        images = facts.stats[s]["images"]
        n = counts[s][column] if counts else round(facts.stats[s]["label_prevalence"].get(label, 0.0) * images)
        cells.append(f"{_pct(n / max(images, 1))} ({n:,})")
    return [f"`{column}`", label, *cells]


def _labels_section(facts: CardFacts, counts: Mapping[str, Mapping[str, int]] | None) -> list[str]:
    rows = [_label_row(facts, counts, column) for column in LABEL_COLUMNS]
    return [
        "## Label prevalence per split",
        "",
        f"![Label prevalence per split]({LABEL_PLOT})",
        "",
        "Share of each split's images carrying the label (count in brackets). An image may carry several "
        "findings; `no_finding` never goes with a finding.",
        "",
        "Each label has one name in the release, its column (first column): the boolean columns of the Parquet "
        "rows and the shards' `.json`, the findings a selection names, and the order of every label vector "
        "(`<id>.labels.npy`, the tensors of `torch_dataset`; the manifest's `label_columns`) are this table's, in "
        "this order. NIH's spelling (second column) is kept only in the `labels` list, as `Data_Entry_2017.csv` "
        "writes it.",
        "",
        *_table(["label", "NIH spelling", *SPLITS], rows),
    ]


def _layer_heading(c: LayerComparison) -> list[str]:
    layer = c.layer
    files = [[f"`{f.name}`", f"`{f.sha256[:16]}…`", f"{f.rows:,}"] for f in layer.files]
    if layer.spec is not None:
        files.append([f"`{layer.spec.name}` (spec)", f"`{layer.spec.sha256[:16]}…`", ""])
    lines = [
        f"### `{layer.id}`",
        "",
        f"Kind `{layer.kind}`, format `{layer.variant}`; column `{layer.id}` (fields "
        f"{', '.join(f'`{name}`' for name in layer.field_names)}) and table `annotations/{layer.id}.parquet`.",
    ]
    given = (("Description", layer.description), ("Citation", layer.citation), ("Licence", layer.licence))
    for title, text in given:
        lines += ["", f"{title}: {text}"] if text else []
    return [*lines, "", *_table(["file", "sha256", "rows"], files), ""]


def _layers_section(facts: CardFacts) -> list[str]:
    if not facts.layers:
        return []
    lines = [
        "## Annotation layers",
        "",
        "Label sets beside the primary labels. Each is one nullable struct column named by the layer id in "
        "`metadata.parquet`, the Parquet rows and each WebDataset sample's `.json` (null where the layer does not "
        "cover the image), and its own table `annotations/<id>.parquet` with the file and line of every row. "
        "Layers never move an image between splits, and `labels` and the finding columns stay NIH's primary labels.",
    ]
    for comparison in facts.layers:
        lines += ["", *_layer_heading(comparison), *render_section(comparison)]
    return lines


def _age_cell(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"


def _counts_table(facts: CardFacts, key: str, title: str) -> list[str]:
    values = sorted({v for s in SPLITS for v in facts.stats[s][key]})
    rows = [[s, *(f"{facts.stats[s][key].get(v, 0):,}" for v in values)] for s in SPLITS]
    return _table([title, *values], rows)


def _patients_section(facts: CardFacts) -> list[str]:
    ages = [
        [s, *(_age_cell(facts.stats[s]["age_years"], k) for k in ("mean", "median", "min", "max")),
         facts.stats[s]["age_years"].get("missing", 0)]
        for s in [*SPLITS, "all"]
    ]  # fmt: skip
    return [
        "## Age, sex and view position",
        "",
        f"![Age per split: each split's share of its images with a known age, per decade]({AGE_PLOT})",
        "",
        f"![Sex and view position per split]({SEX_VIEW_PLOT})",
        "",
        *_table(["split", "mean age", "median", "min", "max", "age missing"], ages),
        "",
        *_counts_table(facts, "sex", "sex"),
        "",
        *_counts_table(facts, "view_position", "view"),
    ]


def _accounting_rows(facts: CardFacts) -> list[list[Any]]:
    lost = facts.accounting.get("quarantined_by_kind", {})
    absent = facts.accounting.get("not_in_source", {})
    where = "left out of the release and listed with their reason in `quarantine.parquet`"
    rows: list[list[Any]] = [["items quarantined", facts.quirks.get("quarantined", 0),
                              f"{where}: {kinds_text(lost)}" if lost else where]]  # fmt: skip
    if absent:
        rows.append([
            "references to images not in this source (subset)", f"{sum(absent.values()):,}",
            f"{kinds_text(absent)} name images this source does not hold (a partial download): not lost, not errors, "
            "not in `quarantine.parquet`; `manifest.json` counts them under `not_in_source`",
        ])  # fmt: skip
    return rows


def _quirks_section(facts: CardFacts) -> list[str]:
    q = facts.quirks
    rows = [
        ["images converted to 8-bit grayscale", q.get("converted_images", 0),
         "RGBA/LA/16-bit PNGs re-encoded once; `converted` is true and `original_mode` names the source mode"],
        ["ages flagged", q.get("flagged_ages", 0),
         "impossible or unreadable ages are null in `age_years` (the source text is not guessed at)"],
        *_accounting_rows(facts),
    ]  # fmt: skip
    lines = ["## Quirks of the source and what was done", "", *_table(["quirk", "count", "handling"], rows)]
    if facts.quarantine_reasons:
        lines += ["", "Quarantine reasons:", ""]
        reasons = sorted(facts.quarantine_reasons.items(), key=lambda item: (-item[1], item[0]))
        lines += _table(["reason", "items"], reasons)
    if facts.metadata_notes:
        lines += ["", "Cells of the metadata file read into one form:", ""]
        notes = sorted(facts.metadata_notes.items())
        lines += _table(["what", "rows"], [[NOTE_TEXT.get(k, k.replace("_", " ")), n] for k, n in notes])
    return lines


def _validation_section(facts: CardFacts) -> list[str]:
    v = facts.validation
    verdict = "passed" if v.get("ok", True) else "FAILED"
    lines = [
        "## Validation",
        "",
        f"The metadata {verdict} {v.get('expectations', 0)} expectations: {v.get('blocking_failures', 0)} blocking "
        f"failures, {v.get('warnings', 0)} warning(s) (details in `validation/`).",
    ]
    failed = v.get("failed", [])
    if failed:
        header = ["severity", "check", "what it expects", "rows"]
        rows = [
            [f["severity"], f"{f['suite']}.{f.get('check') or f['expectation']}", f.get("description") or "",
             f.get("unexpected_count", 0)]
            for f in failed
        ]  # fmt: skip
        lines += ["", *_table(header, rows)]
    return lines


def _diff_section(facts: CardFacts) -> list[str]:
    if facts.diff is None:
        return ["## Changes since the parent release", "", "This is the first release in this store: no parent."]
    counts = facts.diff.counts()
    lines = [
        f"## Changes since the parent release ({facts.diff.old})",
        "",
        *_table(["images", "count"], counts.items()),
        "",
        f"`cxr releases diff {facts.diff.old} {facts.version}` lists every image.",
    ]
    if facts.diff.unexpected_moves:
        lines.append(f"**Warning: {counts['moved']} images changed split under the same split settings.**")
    elif counts["moved"]:
        lines.append("Images moved between splits because the split settings differ from the parent's.")
    if facts.diff.layers:
        rows = [[f"`{layer_id}`", *change.counts().values()] for layer_id, change in facts.diff.layers.items()]
        lines += ["", "Annotation layers (images added to or removed from the layer, values changed):", ""]
        lines += _table(["layer", "added", "removed", "changed", "unchanged"], rows)
    return lines


def _provenance_section(facts: CardFacts) -> list[str]:
    p = facts.provenance
    sources = p.get("sources", {})
    rows = [[name, f"`{sha[:16]}…`"] for group in sources.values() for name, sha in sorted(group.items())]
    return [
        "## Provenance",
        "",
        f"Built by nih-cxr-pipeline {p.get('pipeline_version')} from inputs with fingerprint "
        f"`{p.get('input_fingerprint')}`. Every file's size and SHA-256 are in `manifest.json`; "
        f"`cxr verify --store STORE --release {facts.version}` re-checks them.",
        "",
        *_table(["source file", "sha256"], rows),
    ]


def _intro(facts: CardFacts) -> list[str]:
    everything, small = facts.stats["all"], ", `<id>.small.png`" if facts.small_side else ""
    return [
        f"# NIH ChestX-ray14 — release {facts.version}",
        "",
        f"{everything['images']:,} frontal chest X-ray images of {everything['patients']:,} patients from the NIH "
        "Clinical Center, as 8-bit grayscale PNG, with 14 thoracic finding labels (or `No Finding`), split by "
        "patient into train, val and test. Each image is in `parquet/split=<split>/` (one row per image, PNG "
        f"bytes in `image`{', the small copy in `image_small`' if small else ''}) and in the WebDataset shards "
        f"`webdataset/<split>/` (`<id>.png`{small}, `<id>.json`, `<id>.labels.npy`); `metadata.parquet` has the "
        "same rows without pixels.",
        "",
        f"Parent release: {facts.parent or 'none (first release)'}.",
    ]


def render_card(facts: CardFacts, counts: Mapping[str, Mapping[str, int]] | None = None) -> str:
    """The card as Markdown; ``counts`` (``card_plots.label_counts``) makes label counts exact, not share x images."""
    sections = [
        _intro(facts), _splits_section(facts), _images_section(facts), _labels_section(facts, counts),
        _layers_section(facts), _patients_section(facts), _quirks_section(facts), _validation_section(facts),
        _diff_section(facts), CLOSING, _provenance_section(facts),
    ]  # fmt: skip
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def card_files(facts: CardFacts, meta: pd.DataFrame) -> dict[str, bytes]:
    """The card and its plots: release-relative path -> bytes."""
    card = render_card(facts, card_plots.label_counts(meta)).encode()
    return {"README.md": card, **card_plots.plot_files(facts.stats, meta)}
