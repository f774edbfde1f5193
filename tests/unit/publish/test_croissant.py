"""The Croissant JSON-LD of a release: its files with their checksums, its two record sets and one per layer."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.convert.schema import FINDING_COLUMNS, metadata_schema, release_schema
from pipeline.layers.schema import BOX_FIELDS, EXPERT_FIELDS, LABEL_VERSION_FIELDS, Layer, LayerFile
from pipeline.plan.split import SPLITS
from pipeline.publish import croissant

URL = "s3://bkt/cxr/releases/2026.11.26.2/"


def _files() -> dict[str, dict[str, Any]]:
    return {
        "metadata.parquet": {"size": 1234, "sha256": "a" * 64},
        "quarantine.parquet": {"size": 56, "sha256": "b" * 64},
    }


def _doc(version: str = "2026.11.26.2") -> dict[str, Any]:
    counts = {"train": 8, "val": 2, "test": 3}
    return croissant.build_croissant({"version": version, "counts": counts}, _files(), URL)


@pytest.mark.parametrize(
    ("version", "date"), [("2026.12.02", "2026-12-02"), ("2026.11.26.2", "2026-11-26"), ("v1", None)]
)
def test_the_version_is_the_release_s_name_as_published(version: str, date: str | None) -> None:
    doc = _doc(version)
    assert doc["version"] == version
    assert doc.get("datePublished") == date


def test_the_description_names_each_file_with_its_checksum_and_size() -> None:
    doc = _doc()
    by_id = {item["@id"]: item for item in doc["distribution"]}
    assert set(by_id) == {"metadata.parquet", "quarantine.parquet", "parquet-files", "webdataset-shards"}
    assert by_id["metadata.parquet"]["sha256"] == "a" * 64
    assert by_id["metadata.parquet"]["contentSize"] == "1234 B"
    assert by_id["quarantine.parquet"]["contentUrl"] == "quarantine.parquet", "paths relative to croissant.json"
    assert by_id["parquet-files"]["includes"] == [f"parquet/split={s}/*.parquet" for s in SPLITS]
    assert by_id["webdataset-shards"]["includes"] == [f"webdataset/{s}/*.tar" for s in SPLITS]


def test_two_record_sets_read_every_column_from_files_the_description_names() -> None:
    doc = _doc()
    sets = {rs["@id"]: rs for rs in doc["recordSet"]}
    assert set(sets) == {"metadata", "images"}
    named = {item["@id"] for item in doc["distribution"]}
    for record_set in sets.values():
        for field in record_set["field"]:
            source = field["source"].get("fileObject") or field["source"].get("fileSet")
            assert source["@id"] in named, field["@id"]
            assert field["@id"] == f"{record_set['@id']}/{field['name']}"
    columns = {f["name"] for f in sets["metadata"]["field"]}
    assert {"image_index", "patient_id", "split", *FINDING_COLUMNS} <= columns
    image = next(f for f in sets["images"]["field"] if f["name"] == "image")
    assert image["dataType"] == "sc:ImageObject"
    assert sets["images"]["key"] == {"@id": "images/image_id"}


def test_both_record_sets_describe_labels_boxes_and_pixel_spacing_and_images_the_small_copy() -> None:
    sets = {rs["@id"]: {f["name"]: f for f in rs["field"]} for rs in _doc()["recordSet"]}
    for fields in sets.values():
        assert (fields["labels"]["dataType"], fields["labels"].get("repeated")) == ("sc:Text", True)
        assert fields["pixel_spacing_x"]["dataType"] == fields["pixel_spacing_y"]["dataType"] == "sc:Float"
        boxes = fields["bboxes"]
        assert boxes["repeated"] is True
        assert [sub["name"] for sub in boxes["subField"]] == ["label", "x", "y", "w", "h"]
    assert sets["images"]["image_small"]["dataType"] == "sc:ImageObject"
    assert "image_small" not in sets["metadata"], "metadata.parquet has no pixels"


def test_patient_order_is_described_only_where_the_files_have_it() -> None:
    sets = {rs["@id"]: {f["name"] for f in rs["field"]} for rs in _doc()["recordSet"]}
    assert "patient_order" in sets["metadata"]
    assert "patient_order" in sets["images"]
    without = [c for c in metadata_schema().names if c != "patient_order"]
    counts = {"version": "v1", "counts": {"train": 1}}
    doc = croissant.build_croissant(counts, _files(), URL, metadata_columns=without, part_columns=without)
    assert all("patient_order" not in {f["name"] for f in rs["field"]} for rs in doc["recordSet"])


def test_the_dataset_says_what_it_is_and_a_date_version_becomes_its_date() -> None:
    doc = _doc()
    assert doc["@type"] == "sc:Dataset"
    assert doc["conformsTo"] == croissant.CONFORMS_TO
    assert doc["name"] == "nih-chestxray14-2026.11.26.2"
    assert "13 frontal chest X-ray images (train 8, val 2, test 3)" in doc["description"]
    assert doc["url"] == URL
    json.dumps(doc)  # plain JSON, as croissant.json is written


GOOGLE = Layer("google", "expert_labels", "google2019", (LayerFile("g.csv", "/src/g.csv", "c" * 64, 2),), EXPERT_FIELDS)
V2020 = Layer("v2020", "label_version", "v2020", (LayerFile("d.csv", "/src/d.csv", "d" * 64, 2),), LABEL_VERSION_FIELDS)
BOXES = Layer("extra_boxes", "boxes", "bbox_2017", (LayerFile("b.csv", "/src/b.csv", "e" * 64, 3),), BOX_FIELDS)


def _layer_tables() -> dict[str, pa.Table]:
    """Layer tables as a release holds them: image_index, image_id, the fields (boxes: a row per box), provenance."""
    version: dict[str, Any] = {"labels": pa.array([["Mass", "Effusion"], ["No Finding"]], type=pa.list_(pa.string()))}
    version |= {f.name: [f.name in ("mass", "effusion"), f.name == "no_finding"] for f in LABEL_VERSION_FIELDS[1:]}
    google = {"fracture": pa.array([True, None], type=pa.bool_()), "pneumothorax": [False, True],
              "airspace_opacity": pa.array([None, False], type=pa.bool_()), "nodule_or_mass": [True, False],
              "set_id": ["test", "val"]}  # fmt: skip
    boxes = {"label": ["Mass", "Nodule", "Mass"], "x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.5], "w": [4.0] * 3,
             "h": [5.0] * 3}  # fmt: skip

    def table(names: list[str], fields: dict[str, Any], source: str) -> pa.Table:
        columns = {"image_index": names, "image_id": [n.removesuffix(".png") for n in names], **fields}
        return pa.table({**columns, "source_file": [source] * len(names), "line": list(range(2, 2 + len(names)))})

    return {
        "google": table(["a.png", "b.png"], google, "g.csv"),
        "v2020": table(["a.png", "b.png"], version, "d.csv"),
        "extra_boxes": table(["a.png", "a.png", "b.png"], boxes, "b.csv"),
    }


def _release_with_layers(root: Path) -> dict[str, Any]:
    """Write a tiny release's files under ``root``; return its Croissant document (also written to croissant.json)."""
    written: dict[str, pa.Table] = {
        "metadata.parquet": pa.table({"image_id": ["a", "b"], "image_index": ["a.png", "b.png"]}),
        "quarantine.parquet": pa.table({"reason": pa.array([], type=pa.string())}),
        **{f"annotations/{layer_id}.parquet": t for layer_id, t in _layer_tables().items()},
    }
    files = {}
    for rel, table in written.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / rel)
        body = (root / rel).read_bytes()
        files[rel] = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    annotations = [{**layer.to_dict(), "table": f"annotations/{layer.id}.parquet"} for layer in (GOOGLE, V2020, BOXES)]
    manifest = {"version": "2026.11.26", "counts": {"train": 2}, "annotations": annotations}
    doc = croissant.build_croissant(manifest, files, URL)
    (root / "croissant.json").write_text(json.dumps(doc))
    return doc


def test_each_layer_gets_its_table_and_a_record_set_of_its_fields(tmp_path: Path) -> None:
    doc = _release_with_layers(tmp_path)
    by_id = {item["@id"]: item for item in doc["distribution"]}
    assert by_id["annotations/google.parquet"]["contentUrl"] == "annotations/google.parquet"
    assert (
        by_id["annotations/google.parquet"]["sha256"]
        == hashlib.sha256((tmp_path / "annotations/google.parquet").read_bytes()).hexdigest()
    )
    sets = {rs["@id"]: rs for rs in doc["recordSet"]}
    assert set(sets) == {"metadata", "images", "annotations_google", "annotations_v2020", "annotations_extra_boxes"}
    google = {f["name"]: f for f in sets["annotations_google"]["field"]}
    assert list(google) == ["image_index", "image_id", *(f.name for f in EXPERT_FIELDS), "source_file", "line"]
    assert (google["fracture"]["dataType"], google["set_id"]["dataType"]) == ("sc:Boolean", "sc:Text")
    labels = next(f for f in sets["annotations_v2020"]["field"] if f["name"] == "labels")
    assert (labels["dataType"], labels["repeated"]) == ("sc:Text", True)
    boxes = [f["name"] for f in sets["annotations_extra_boxes"]["field"]]
    assert boxes == ["image_index", "image_id", "label", "x", "y", "w", "h", "source_file", "line"]
    assert "key" not in sets["annotations_extra_boxes"], "a box layer has several rows per image"
    assert sets["annotations_google"]["key"] == {"@id": "annotations_google/image_index"}


def test_mlcroissant_validates_the_layers_and_reads_their_records(tmp_path: Path) -> None:
    import mlcroissant as mlc

    _release_with_layers(tmp_path)
    dataset = mlc.Dataset(jsonld=str(tmp_path / "croissant.json"))
    assert not dataset.metadata.ctx.issues.errors
    google = list(dataset.records("annotations_google"))
    assert [(r["annotations_google/fracture"], r["annotations_google/set_id"]) for r in google] == [
        (True, b"test"),
        (None, b"val"),
    ]
    version = list(dataset.records("annotations_v2020"))
    assert [r["annotations_v2020/labels"] for r in version] == [[b"Mass", b"Effusion"], [b"No Finding"]]
    boxes = list(dataset.records("annotations_extra_boxes"))
    assert [(r["annotations_extra_boxes/label"], r["annotations_extra_boxes/y"]) for r in boxes] == [
        (b"Mass", 1.0),
        (b"Nodule", 2.0),
        (b"Mass", 3.5),
    ]


def test_a_release_without_layers_describes_none() -> None:
    doc = _doc()
    assert not [rs for rs in doc["recordSet"] if rs["@id"].startswith("annotations_")]
    assert not [d for d in doc["distribution"] if d["@id"].startswith("annotations/")]


def _png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (side, side // 2), 90).save(buf, format="PNG")
    return buf.getvalue()


def _rows() -> list[dict[str, Any]]:
    """Three published rows: one with two boxes and a small copy, one without boxes, one without a small copy."""
    boxes = [{"label": "Mass", "x": 10.0, "y": 20.0, "w": 30.0, "h": 40.0},
             {"label": "Nodule", "x": 1.5, "y": 2.5, "w": 3.5, "h": 4.5}]  # fmt: skip
    specs = [("00000001_000", "train", ["Mass", "Pleural_Thickening"], boxes, 16),
             ("00000001_001", "train", ["No Finding"], [], 16),
             ("00000002_000", "test", ["Effusion"], [], 0)]  # fmt: skip
    rows = []
    for image_id, split, labels, bboxes, small in specs:
        flags = {col: col in {label.lower() for label in labels} for col in FINDING_COLUMNS}
        rows.append({
            "image_id": image_id, "image_index": f"{image_id}.png", "patient_id": int(image_id[:8]),
            "follow_up": int(image_id[-3:]), "patient_order": int(image_id[-3:]), "age_years": 50.0, "sex": "F",
            "view_position": "PA", "labels": labels,
            "no_finding": labels == ["No Finding"], **flags, "bboxes": bboxes, "original_width": 64,
            "original_height": 32, "pixel_spacing_x": 0.143, "pixel_spacing_y": 0.139, "split": split,
            "source_shard": "images_001.zip", "original_mode": "L", "converted": False, "repaired": None,
            "sha256": "f" * 64, "image": _png(64), "image_small": _png(small) if small else None,
        })  # fmt: skip
    return rows


def _release_with_images(root: Path, version: str) -> None:
    """Write metadata.parquet, one Parquet part per split and croissant.json under ``root``."""
    rows = _rows()
    for split in ("train", "test"):
        part = root / f"parquet/split={split}/{split}-000000-00.parquet"
        part.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([r for r in rows if r["split"] == split], schema=release_schema()), part)
    meta = pa.Table.from_pylist(rows, schema=release_schema()).select(metadata_schema().names)
    pq.write_table(meta, root / "metadata.parquet")
    pq.write_table(pa.table({"reason": pa.array([], type=pa.string())}), root / "quarantine.parquet")
    files = {}
    for rel in ("metadata.parquet", "quarantine.parquet"):
        body = (root / rel).read_bytes()
        files[rel] = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    manifest = {"version": version, "counts": {"train": 2, "test": 1}}
    doc = croissant.build_croissant(manifest, files, URL)
    (root / "croissant.json").write_text(json.dumps(doc))


def test_mlcroissant_reads_labels_boxes_spacing_patient_order_and_the_small_copy(tmp_path: Path) -> None:
    import mlcroissant as mlc

    _release_with_images(tmp_path, "2026.12.02")
    dataset = mlc.Dataset(jsonld=str(tmp_path / "croissant.json"))
    issues = dataset.metadata.ctx.issues
    assert not issues.errors
    assert all("Version doesn't follow MAJOR.MINOR.PATCH: 2026.12.02" in w for w in issues.warnings), issues.warnings
    assert dataset.metadata.version == "2026.12.02"
    meta = {r["metadata/image_id"].decode(): r for r in dataset.records("metadata")}
    first = meta["00000001_000"]
    assert first["metadata/labels"] == [b"Mass", b"Pleural_Thickening"]
    assert first["metadata/pleural_thickening"] is True
    assert [(b["metadata/bboxes/label"], b["metadata/bboxes/x"], b["metadata/bboxes/h"])
            for b in first["metadata/bboxes"]] == [(b"Mass", 10.0, 40.0), (b"Nodule", 1.5, 4.5)]  # fmt: skip
    assert meta["00000001_001"]["metadata/bboxes"] == []
    assert (first["metadata/pixel_spacing_x"], first["metadata/pixel_spacing_y"]) == (0.143, 0.139)
    assert [meta[i]["metadata/patient_order"] for i in sorted(meta)] == [0, 1, 0]
    images = {r["images/image_id"].decode(): r for r in dataset.records("images")}
    assert sorted(images) == sorted(meta)
    assert images["00000001_000"]["images/image"].size == (64, 32)
    assert images["00000001_000"]["images/image_small"].size == (16, 8)
    assert images["00000002_000"]["images/image_small"] is None
    assert images["00000002_000"]["images/labels"] == [b"Effusion"]
    assert images["00000001_001"]["images/patient_order"] == 1


def test_a_version_that_is_not_a_date_is_kept_as_published(tmp_path: Path) -> None:
    import mlcroissant as mlc

    _release_with_images(tmp_path, "v1")
    dataset = mlc.Dataset(jsonld=str(tmp_path / "croissant.json"))
    assert not dataset.metadata.ctx.issues.errors
    assert dataset.metadata.version == "v1"
    assert len(list(dataset.records("metadata"))) == 3
