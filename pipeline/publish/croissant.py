"""An MLCommons Croissant 1.0 description of a release (``croissant.json``), which ``mlcroissant`` validates.

It lists the release's files with their SHA-256 (``metadata.parquet``, ``quarantine.parquet``) and
file sets (the Parquet parts per split, the WebDataset shards), and describes two record sets:
``metadata`` (one record per image, no pixels) and ``images`` (the same rows with the PNG bytes).
File locations are relative to ``croissant.json``, so the description stays valid wherever the release
is copied or mirrored.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline import nih
from pipeline.convert.schema import FINDING_COLUMNS
from pipeline.plan.split import SPLITS
from pipeline.publish.card import CITATION

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
PARQUET = "application/x-parquet"
LICENSE = "https://creativecommons.org/publicdomain/mark/1.0/"
_DATE_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?$")

#: column -> (Croissant data type, description)
COLUMNS: dict[str, tuple[str, str]] = {
    "image_id": ("sc:Text", "Image name without extension: <8-digit patient id>_<3-digit follow-up>."),
    "image_index": ("sc:Text", "Image file name as in Data_Entry_2017.csv."),
    "patient_id": ("sc:Integer", "Patient identifier; every image of a patient is in one split."),
    "follow_up": ("sc:Integer", "Follow-up number of the image for its patient."),
    "age_years": ("sc:Float", "Patient age in years; null when the source age was impossible or unreadable."),
    "sex": ("sc:Text", "Patient sex as recorded: M or F."),
    "view_position": ("sc:Text", "View position: PA or AP."),
    "split": ("sc:Text", "train, val or test (patient-level)."),
    "no_finding": ("sc:Boolean", "True when the image carries the label No Finding."),
    "original_width": ("sc:Integer", "Width of the original image in pixels."),
    "original_height": ("sc:Integer", "Height of the original image in pixels."),
    "converted": ("sc:Boolean", "True when the source PNG was not 8-bit grayscale and was re-encoded."),
    "sha256": ("sc:Text", "SHA-256 of the published PNG bytes."),
}


def croissant_version(version: str) -> str | None:
    """The release version as Semantic Versioning (``2026.01.05.2`` -> ``2026.1.5+2``); None if not a date."""
    match = _DATE_VERSION.match(version)
    if not match:
        return None
    major, minor, patch, extra = match.groups()
    return f"{int(major)}.{int(minor)}.{int(patch)}" + (f"+{int(extra)}" if extra else "")


def _file_object(path: str, entry: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "@type": "cr:FileObject",
        "@id": path,
        "name": path,
        "description": description,
        "contentUrl": path,
        "contentSize": f"{entry['size']} B",
        "encodingFormat": PARQUET,
        "sha256": entry["sha256"],
    }


def _file_set(ident: str, includes: list[str], fmt: str, description: str) -> dict[str, Any]:
    return {
        "@type": "cr:FileSet",
        "@id": ident,
        "name": ident,
        "description": description,
        "encodingFormat": fmt,
        "includes": includes,
    }


def _field(record_set: str, source: str, column: str, data_type: str, description: str) -> dict[str, Any]:
    return {
        "@type": "cr:Field",
        "@id": f"{record_set}/{column}",
        "name": column,
        "description": description,
        "dataType": data_type,
        "source": {"fileObject" if source.endswith(".parquet") else "fileSet": {"@id": source},
                   "extract": {"column": column}},
    }  # fmt: skip


def _fields(record_set: str, source: str) -> list[dict[str, Any]]:
    fields = [_field(record_set, source, col, kind, text) for col, (kind, text) in COLUMNS.items()]
    for column, label in zip(FINDING_COLUMNS, nih.FINDINGS, strict=True):
        fields.append(_field(record_set, source, column, "sc:Boolean", f"True when the image carries {label}."))
    return fields


def _distribution(files: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        _file_object("metadata.parquet", files["metadata.parquet"], "One row per image, without pixels."),
        _file_object("quarantine.parquet", files["quarantine.parquet"], "Source items left out, with reasons."),
        _file_set(
            "parquet-files",
            [f"parquet/split={s}/*.parquet" for s in SPLITS],
            PARQUET,
            "One row per image with the PNG bytes in column `image`, partitioned by split.",
        ),
        _file_set(
            "webdataset-shards",
            [f"webdataset/{s}/*.tar" for s in SPLITS],
            "application/x-tar",
            "WebDataset shards: <id>.png, <id>.json (the metadata row), <id>.labels.npy (15 uint8, "
            "the 14 findings then No Finding).",
        ),
    ]


def _images_record_set() -> dict[str, Any]:
    fields = _fields("images", "parquet-files")
    image = _field("images", "parquet-files", "image", "sc:ImageObject", "The PNG image (8-bit grayscale).")
    return {
        "@type": "cr:RecordSet",
        "@id": "images",
        "name": "images",
        "description": "Every image of the release with its metadata and PNG bytes.",
        "key": {"@id": "images/image_id"},
        "field": [*fields, image],
    }


def build_croissant(manifest: dict[str, Any], files: dict[str, dict[str, Any]], url: str) -> dict[str, Any]:
    """The Croissant JSON-LD of a release.

    Args:
        manifest: The release's manifest fields known so far (version, counts, config, ...).
        files: Release-relative path -> manifest file entry (needs ``metadata.parquet`` and ``quarantine.parquet``).
        url: Where the release lives (``s3://bucket/prefix/releases/<version>/``).
    """
    version = str(manifest["version"])
    counts = manifest.get("counts", {})
    doc: dict[str, Any] = {
        "@context": context(),
        "@type": "sc:Dataset",
        "name": f"nih-chestxray14-{version}",
        "description": (
            f"NIH ChestX-ray14 release {version}: {sum(counts.values())} frontal chest X-ray images "
            f"({', '.join(f'{k} {v}' for k, v in counts.items())}) with 14 NLP-mined finding labels, split by patient. "
            "Labels are mined from radiology reports (about 90% accurate)."
        ),
        "conformsTo": CONFORMS_TO,
        "citeAs": CITATION,
        "license": LICENSE,
        "url": url,
        "creator": {"@type": "sc:Organization", "name": "NIH Clinical Center", "url": "https://www.cc.nih.gov/"},
        "keywords": ["chest x-ray", "radiology", "multi-label classification", "medical imaging"],
        "distribution": _distribution(files),
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "metadata",
                "name": "metadata",
                "description": "One record per image: patient, labels (one boolean per finding), split.",
                "key": {"@id": "metadata/image_id"},
                "field": _fields("metadata", "metadata.parquet"),
            },
            _images_record_set(),
        ],
    }
    match = _DATE_VERSION.match(version)
    if match:
        doc["version"] = croissant_version(version)
        doc["datePublished"] = "-".join(f"{int(part):02d}" for part in match.groups()[:3])
    return doc


def context() -> dict[str, Any]:
    """The standard Croissant 1.0 ``@context``."""
    return {
        "@language": "en",
        "@vocab": "https://schema.org/",
        "citeAs": "cr:citeAs",
        "column": "cr:column",
        "conformsTo": "dct:conformsTo",
        "cr": "http://mlcommons.org/croissant/",
        "rai": "http://mlcommons.org/croissant/RAI/",
        "data": {"@id": "cr:data", "@type": "@json"},
        "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
        "equivalentProperty": "cr:equivalentProperty",
        "dct": "http://purl.org/dc/terms/",
        "examples": {"@id": "cr:examples", "@type": "@json"},
        "extract": "cr:extract",
        "field": "cr:field",
        "fileProperty": "cr:fileProperty",
        "fileObject": "cr:fileObject",
        "fileSet": "cr:fileSet",
        "format": "cr:format",
        "includes": "cr:includes",
        "isLiveDataset": "cr:isLiveDataset",
        "jsonPath": "cr:jsonPath",
        "key": "cr:key",
        "md5": "cr:md5",
        "parentField": "cr:parentField",
        "path": "cr:path",
        "recordSet": "cr:recordSet",
        "references": "cr:references",
        "regex": "cr:regex",
        "repeated": "cr:repeated",
        "replace": "cr:replace",
        "samplingRate": "cr:samplingRate",
        "sc": "https://schema.org/",
        "separator": "cr:separator",
        "source": "cr:source",
        "subField": "cr:subField",
        "transform": "cr:transform",
    }
