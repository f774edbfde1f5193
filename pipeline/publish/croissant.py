"""An MLCommons Croissant 1.0 description of a release (``croissant.json``), which ``mlcroissant`` validates.

It lists the release's files with their SHA-256 (``metadata.parquet``, ``quarantine.parquet``) and
file sets (the Parquet parts per split, the WebDataset shards), and describes two record sets:
``metadata`` (one record per image, no pixels) and ``images`` (the same rows with the PNG bytes). Each annotation
layer the manifest lists adds its table ``annotations/<id>.parquet`` and a record set ``annotations_<id>``: one
record per covered image (a box layer: one per box), its fields, and the file and line each row came from.
File locations are relative to ``croissant.json``, so the description stays valid wherever the release
is copied or mirrored.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline import nih
from pipeline.convert.schema import FINDING_COLUMNS
from pipeline.layers.schema import Layer
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


#: A layer field's type -> its Croissant data type (``labels`` is a repeated ``sc:Text``).
LAYER_DATA_TYPES = {"bool": "sc:Boolean", "string": "sc:Text", "labels": "sc:Text"}
#: A box layer's table has one row per box: these columns after ``image_index``.
BOX_COLUMNS: dict[str, tuple[str, str]] = {
    "label": ("sc:Text", "The finding the box marks, as the layer's file spells it."),
    "x": ("sc:Float", "Left edge of the box, in pixels of the original 1024x1024 image."),
    "y": ("sc:Float", "Top edge of the box, in pixels of the original 1024x1024 image."),
    "w": ("sc:Float", "Width of the box in pixels."),
    "h": ("sc:Float", "Height of the box in pixels."),
}
#: Every layer table ends with where each row came from.
PROVENANCE_COLUMNS: dict[str, tuple[str, str]] = {
    "source_file": ("sc:Text", "The layer file the row was read from."),
    "line": ("sc:Integer", "The row's line in that file (1 is the header)."),
}


def _field(
    record_set: str, source: str, column: str, data_type: str, description: str, *, repeated: bool = False
) -> dict[str, Any]:
    field: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{column}",
        "name": column,
        "description": description,
        "dataType": data_type,
        "source": {"fileObject" if source.endswith(".parquet") else "fileSet": {"@id": source},
                   "extract": {"column": column}},
    }  # fmt: skip
    if repeated:
        field["repeated"] = True
    return field


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


def layers_of(manifest: dict[str, Any]) -> list[tuple[Layer, str]]:
    """The manifest's annotation layers with their table's release-relative path (none in an older release)."""
    return [
        (Layer.from_dict(entry), str(entry.get("table") or f"annotations/{entry['id']}.parquet"))
        for entry in manifest.get("annotations") or []
    ]


def _layer_file(layer: Layer, table: str, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    described = layer.description or f"{layer.kind} layer read from {', '.join(f.name for f in layer.files)}"
    return _file_object(table, files[table], f"Annotation layer `{layer.id}` as normalised: {described}")


def _layer_fields(layer: Layer, record_set: str, table: str) -> list[dict[str, Any]]:
    fields = [
        _field(record_set, table, "image_index", "sc:Text", "Image file name (the release's image_index)."),
        _field(record_set, table, "image_id", "sc:Text", "Image name without extension (the release's image_id)."),
    ]
    if layer.kind == "boxes":
        fields += [_field(record_set, table, col, kind, text) for col, (kind, text) in BOX_COLUMNS.items()]
    else:
        for f in layer.fields:
            text = f.description or f"{f.name} in layer {layer.id}"
            fields.append(
                _field(record_set, table, f.name, LAYER_DATA_TYPES[f.type], text, repeated=f.type == "labels")
            )
    fields += [_field(record_set, table, col, kind, text) for col, (kind, text) in PROVENANCE_COLUMNS.items()]
    return fields


def _layer_record_set(layer: Layer, table: str) -> dict[str, Any]:
    ident = f"annotations_{layer.id}"
    per = "box" if layer.kind == "boxes" else "image the layer covers"
    record_set: dict[str, Any] = {
        "@type": "cr:RecordSet",
        "@id": ident,
        "name": ident,
        "description": f"Annotation layer `{layer.id}` ({layer.kind}, {layer.variant}): one record per {per}; "
        f"the same values are the struct column `{layer.id}` of `metadata`.",
        "field": _layer_fields(layer, ident, table),
    }
    if layer.kind != "boxes":
        record_set["key"] = {"@id": f"{ident}/image_index"}
    return record_set


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
        manifest: The release's manifest fields known so far (version, counts, ``annotations``, ...).
        files: Release-relative path -> manifest file entry (needs ``metadata.parquet``, ``quarantine.parquet`` and
            each layer's ``annotations/<id>.parquet``).
        url: Where the release lives (``s3://bucket/prefix/releases/<version>/``).
    """
    version = str(manifest["version"])
    counts = manifest.get("counts", {})
    layers = layers_of(manifest)
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
        "distribution": [*_distribution(files), *(_layer_file(lay, path, files) for lay, path in layers)],
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
            *(_layer_record_set(lay, path) for lay, path in layers),
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
