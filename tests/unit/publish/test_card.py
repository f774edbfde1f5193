"""The dataset card's text from made-up facts (no store)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pyarrow as pa

from pipeline import nih
from pipeline.cli.releases import human_size
from pipeline.layers import compare
from pipeline.layers.schema import EXPERT_FIELDS, Layer, LayerFile, struct_type
from pipeline.plan.split import SPLITS
from pipeline.publish import card, card_plots
from pipeline.publish.diff import diff_tables


def _stats() -> dict[str, dict[str, object]]:
    def one(images: int, patients: int) -> dict[str, object]:
        return {
            "images": images,
            "patients": patients,
            "label_prevalence": {label: (0.25 if label == "Effusion" else 0.0) for label in nih.LABELS},
            "sex": {"F": images // 2, "M": images - images // 2},
            "view_position": {"AP": 1, "PA": images - 1},
            "age_years": {"mean": 40.5, "median": 41.0, "min": 2.0, "max": 88.0, "missing": 1},
        }

    return {"train": one(8, 4), "val": one(4, 2), "test": one(4, 2), "all": one(16, 8)}


def _facts(with_parent: bool) -> card.CardFacts:
    old = pa.table({"image_index": ["a.png"], "labels": [["Mass"]], "split": ["train"]})
    new = pa.table({"image_index": ["a.png", "b.png"], "labels": [["Mass"], ["Edema"]], "split": ["train", "val"]})
    return card.CardFacts(
        version="2026.11.26",
        parent="2026.11.25" if with_parent else None,
        stats=_stats(),
        quirks={"converted_images": 3, "flagged_ages": 2, "quarantined": 5},
        quarantine_reasons={"truncated PNG": 4, "not a PNG": 1},
        metadata_notes={"age_months": 1},
        validation={"ok": True, "expectations": 64, "blocking_failures": 0, "warnings": 0, "failed": []},
        diff=diff_tables(old, new, "2026.11.25", "2026.11.26", True) if with_parent else None,
        provenance={"split_mode": "official", "config": {"seed": 0}, "sources": {"files": {"x.csv": "ab" * 32}}},
    )


def test_card_reads_as_a_summary_of_the_release() -> None:
    text = card.render_card(_facts(with_parent=True))
    assert text.startswith("# NIH ChestX-ray14 — release 2026.11.26\n")
    assert "| train | 8 | 4 | 50.0% |" in text
    assert "| `effusion` | Effusion | 25.0% (2) | 25.0% (1) | 25.0% (1) |" in text
    assert "| items quarantined | 5 |" in text
    assert "| truncated PNG | 4 |" in text
    assert "ages given in months (`011M`), converted to years" in text
    assert "## Changes since the parent release (2026.11.25)" in text
    assert "| added | 1 |" in text
    assert "about 90% accurate" in text


def test_first_release_says_it_has_no_parent() -> None:
    text = card.render_card(_facts(with_parent=False))
    assert "This is the first release in this store: no parent." in text


def test_card_names_what_was_quarantined_apart_from_what_the_source_lacks() -> None:
    facts = dataclasses.replace(
        _facts(with_parent=False),
        quirks={"converted_images": 0, "flagged_ages": 0, "quarantined": 3},
        accounting={
            "quarantined_by_kind": {"images": 2, "box_rows": 1, "split_list_rows": 0},
            "not_in_source": {"data_entry_rows": 1976, "boxes": 984, "split_list_names": 94143},
        },
    )
    text = card.render_card(facts)
    assert "| items quarantined | 3 | left out of the release and listed with their reason in " in text
    assert "`quarantine.parquet`: 2 images, 1 box row |" in text
    assert (
        "| references to images not in this source (subset) | 97,103 | 94,143 split-list names, 984 boxes, "
        "1,976 Data_Entry rows name images this source does not hold (a partial download): not lost, not errors"
    ) in text


def test_human_sizes() -> None:
    assert [human_size(n) for n in (512, 1536, 3 << 30)] == ["512 B", "1.5 KiB", "3.0 GiB"]


GOOGLE = Layer(
    "google",
    "expert_labels",
    "google2019",
    (LayerFile("test_labels.csv", "/src/test_labels.csv", "ab" * 32, 3),),
    EXPERT_FIELDS,
    description="Radiologist-adjudicated labels for 4 findings",
    licence="CC BY 4.0",
)


def _google_comparison() -> compare.LayerComparison:
    columns = [nih.finding_column(label) for label in nih.LABELS]
    rows = [("a.png", "test", ["Pneumothorax"]), ("b.png", "test", ["No Finding"]), ("c.png", "train", ["Mass"])]
    values = [
        {"fracture": False, "pneumothorax": True, "airspace_opacity": None, "nodule_or_mass": False, "set_id": "test"},
        {"fracture": None, "pneumothorax": False, "airspace_opacity": None, "nodule_or_mass": False, "set_id": "val"},
        None,
    ]
    table = pa.table(
        {
            "image_index": [r[0] for r in rows],
            "split": [r[1] for r in rows],
            "labels": [r[2] for r in rows],
            **{col: [label in r[2] for r in rows] for col, label in zip(columns, nih.LABELS, strict=True)},
            "google": pa.array(values, type=struct_type(GOOGLE)),
        }
    )
    return compare.compare_layer(GOOGLE, table.to_pandas())


def test_each_layer_gets_a_subsection_after_the_labels() -> None:
    text = card.render_card(dataclasses.replace(_facts(with_parent=False), layers=(_google_comparison(),)))
    assert text.index("## Label prevalence per split") < text.index("## Annotation layers") < text.index("## Age,")
    section = text[text.index("## Annotation layers") : text.index("## Age,")]
    assert "### `google`" in section
    assert "Kind `expert_labels`, format `google2019`" in section
    assert "| `test_labels.csv` | `abababababababab…` | 3 |" in section
    assert "Description: Radiologist-adjudicated labels for 4 findings" in section
    assert "Licence: CC BY 4.0" in section
    assert "Citation" not in section
    assert "| test | 2 | 100.0% |\n" in section
    assert "| `pneumothorax` | Pneumothorax | 1 | 0 | 0 | 1 | 100.0% | 1.000 |" in section
    assert "| `val` | 0 | 0 | 1 | 1 |" in section


def test_a_release_without_layers_has_no_layer_section() -> None:
    assert "Annotation layers" not in card.render_card(_facts(with_parent=True))


def test_the_changes_section_counts_each_layer_s_changes() -> None:
    struct = pa.struct([("pneumothorax", pa.bool_())])
    old = pa.table({"image_index": ["a.png"], "labels": [["Mass"]], "split": ["train"]})
    new = old.append_column("google", pa.array([{"pneumothorax": True}], type=struct))
    facts = dataclasses.replace(_facts(with_parent=True), diff=diff_tables(old, new, "2026.11.25", "2026.11.26", True))
    text = card.render_card(facts)
    assert "| layer | added | removed | changed | unchanged |" in text
    assert "| `google` | 1 | 0 | 0 | 0 |" in text


def test_label_tables_name_each_label_by_its_column_beside_nih_s_spelling() -> None:
    text = card.render_card(_facts(with_parent=False))
    assert "| label | NIH spelling | train | val | test |" in text
    assert "| `pleural_thickening` | Pleural_Thickening | 0.0% (0) | 0.0% (0) | 0.0% (0) |" in text
    assert "| `no_finding` | No Finding |" in text
    section = text[text.index("## Label prevalence") : text.index("## Age,")]
    rows = [line.split(" | ")[0].removeprefix("| ") for line in section.splitlines() if line.startswith("| `")]
    assert rows == [f"`{nih.finding_column(label)}`" for label in nih.LABELS], "in label-vector order"
    assert "Pleural Thickening" not in text, "no third spelling"


def test_exact_counts_from_the_metadata_replace_share_times_images() -> None:
    counts = {s: dict.fromkeys(card_plots.LABEL_COLUMNS, 0) for s in SPLITS}
    counts["train"]["effusion"] = 3
    text = card.render_card(_facts(with_parent=False), counts)
    assert "| `effusion` | Effusion | 37.5% (3) | 0.0% (0) | 0.0% (0) |" in text


def test_the_card_names_the_small_copy_and_its_size_per_split() -> None:
    sizes = {"train": {"full": 3 << 30, "small": 150 << 20}, "val": {"full": 1536, "small": 512},
             "test": {"full": 2048, "small": 1024}}  # fmt: skip
    text = card.render_card(dataclasses.replace(_facts(with_parent=False), image_bytes=sizes, small_side=256))
    section = text[text.index("## Full images and the small copy") : text.index("## Label prevalence")]
    assert "downsized to 256 px on its long side (`image_small`, `<id>.small.png`)" in section
    assert "| split | images | full (`image`) | small (`image_small`) |" in section
    assert "| train | 8 | 3.0 GiB | 150.0 MiB |" in section
    assert "| val | 4 | 1.5 KiB | 512 B |" in section
    assert "| **all** | 16 | 3.0 GiB | 150.0 MiB |" in section
    assert "`<id>.small.png`" in text[: text.index("## Images and patients")], "named where the layout is"


def test_without_sizes_the_card_still_names_the_small_copy_and_without_one_says_so() -> None:
    text = card.render_card(_facts(with_parent=False))
    assert "a small copy downsized to 256 px on its long side (`image_small`, `<id>.small.png`)" in text
    assert "| split | images | full" not in text
    none = card.render_card(dataclasses.replace(_facts(with_parent=False), small_side=None))
    assert "This release has no small copy" in none
    assert "`<id>.png`, `<id>.json`" in none


def test_card_files_are_the_card_and_its_three_plots_each_referenced_by_it() -> None:
    meta = pd.DataFrame(
        {
            "split": ["train"] * 8 + ["val"] * 4 + ["test"] * 4,
            "age_years": [40.0] * 16,
            **{col: [col == "effusion"] * 16 for col in card_plots.LABEL_COLUMNS},
        }
    )
    files = card.card_files(_facts(with_parent=False), meta)
    assert set(files) == {"README.md", card_plots.LABEL_PLOT, card_plots.AGE_PLOT, card_plots.SEX_VIEW_PLOT}
    text = files["README.md"].decode()
    for plot in (card_plots.LABEL_PLOT, card_plots.AGE_PLOT, card_plots.SEX_VIEW_PLOT):
        assert f"]({plot})" in text
    assert "![Sex and view position per split](card/sex_and_view.png)" in text
    assert "| `effusion` | Effusion | 100.0% (8) | 100.0% (4) | 100.0% (4) |" in text, "counts from the rows"
