"""The Croissant JSON-LD of a release: it names the release's files with their checksums and its two record sets."""

from __future__ import annotations

import json
from typing import Any

from pipeline.convert.schema import FINDING_COLUMNS
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


def test_croissant_versions_follow_semver() -> None:
    assert croissant.croissant_version("2026.01.05") == "2026.1.5"
    assert croissant.croissant_version("2026.11.26.2") == "2026.11.26+2"
    assert croissant.croissant_version("v7") is None


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


def test_the_dataset_says_what_it_is_and_a_date_version_becomes_its_date() -> None:
    doc = _doc()
    assert doc["@type"] == "sc:Dataset"
    assert doc["conformsTo"] == croissant.CONFORMS_TO
    assert doc["name"] == "nih-chestxray14-2026.11.26.2"
    assert "13 frontal chest X-ray images (train 8, val 2, test 3)" in doc["description"]
    assert (doc["version"], doc["datePublished"], doc["url"]) == ("2026.11.26+2", "2026-11-26", URL)
    named = _doc("v7")
    assert "version" not in named
    assert "datePublished" not in named
    json.dumps(doc)  # plain JSON, as croissant.json is written
