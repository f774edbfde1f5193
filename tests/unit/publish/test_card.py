"""The dataset card's text from made-up facts (no store)."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from pipeline import nih
from pipeline.cli.releases import human_size
from pipeline.layers import compare
from pipeline.layers.schema import EXPERT_FIELDS, Layer, LayerFile, struct_type
from pipeline.publish import card
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
    assert "| Effusion | 25.0% (2) | 25.0% (1) | 25.0% (1) |" in text
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
