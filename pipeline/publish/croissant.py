"""An MLCommons Croissant 1.0 description of a release (``croissant.json``), which ``mlcroissant`` validates.

It lists the release's files with their SHA-256 (``metadata.parquet``, ``quarantine.parquet``) and
file sets (the Parquet parts per split, the WebDataset shards), and describes two record sets:
``metadata`` (one record per image, no pixels) and ``images`` (the same rows with the full PNG in ``image`` and the
small copy in ``image_small``). Both carry the finding columns, ``labels`` (repeated text, NIH's spelling),
``bboxes`` (repeated, with sub-fields ``label``/``x``/``y``/``w``/``h``), the pixel spacing and, where the files
have it, ``patient_order``. Each annotation layer the manifest lists adds its table ``annotations/<id>.parquet``
and a record set ``annotations_<id>``: one record per covered image (a box layer: one per box), its fields, and the
file and line each row came from. ``version`` is the release's version exactly as published (``2026.12.02``,
``v1``; mlcroissant warns that such a version is not Semantic Versioning, which is no error). File locations are
relative to ``croissant.json``, so the description stays valid wherever the release is copied or mirrored.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from pipeline import nih
from pipeline.convert.schema import FINDING_COLUMNS, metadata_schema, release_schema
from pipeline.layers.schema import Layer
from pipeline.plan.split import SPLITS
from pipeline.publish.card import CITATION

__all__ = [
    "BOX_COLUMNS",
    "COLUMNS",
    "CONFORMS_TO",
    "LAYER_DATA_TYPES",
    "PROVENANCE_COLUMNS",
    "build_croissant",
    "context",
    "date_published",
    "layers_of",
]

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
PARQUET = "application/x-parquet"
LICENSE = "https://creativecommons.org/publicdomain/mark/1.0/"
_DATE_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?$")

#: column -> (Croissant data type, description), in the files' order; a column the files lack is not described.
COLUMNS: dict[str, tuple[str, str]] = {
    "image_id": ("sc:Text", "Image name without extension: <8-digit patient id>_<3-digit follow-up>."),
    "image_index": ("sc:Text", "Image file name as in Data_Entry_2017.csv."),
    "patient_id": ("sc:Integer", "Patient identifier; every image of a patient is in one split."),
    "follow_up": ("sc:Integer", "Follow-up number of the image for its patient."),
    "patient_order": ("sc:Integer", "0 for the patient's first image by follow-up, 1 for the next, and so on."),
    "age_years": ("sc:Float", "Patient age in years; null when the source age was impossible or unreadable."),
    "sex": ("sc:Text", "Patient sex as recorded: M or F."),
    "view_position": ("sc:Text", "View position: PA or AP."),
    "labels": ("sc:Text", "The image's labels as NIH spells them (Pleural_Thickening, No Finding); the boolean "
               "columns name the same labels as the release does everywhere else (pleural_thickening)."),
    "no_finding": ("sc:Boolean", "True when the image carries the label No Finding."),
    "original_width": ("sc:Integer", "Width of the original image in pixels."),
    "original_height": ("sc:Integer", "Height of the original image in pixels."),
    "pixel_spacing_x": ("sc:Float", "Horizontal size of a pixel of the original image, in mm."),
    "pixel_spacing_y": ("sc:Float", "Vertical size of a pixel of the original image, in mm."),
    "split": ("sc:Text", "train, val or test (patient-level)."),
    "converted": ("sc:Boolean", "True when the source PNG was not 8-bit grayscale and was re-encoded."),
    "sha256": ("sc:Text", "SHA-256 of the published PNG bytes."),
}  # fmt: skip
#: Columns that hold a list: each is a repeated field.
REPEATED = frozenset({"labels"})
#: The pixel columns of the Parquet parts (record set ``images``).
IMAGE_COLUMNS: dict[str, str] = {
    "image": "The full image: 8-bit grayscale PNG as published.",
    "image_small": "The small copy of the image: the PNG downsized on its long side (the card names the size); "
    "null when the release was built without it.",
}


def date_published(version: str) -> str | None:
    """The date a version named by date stands for (``2026.12.02.2`` -> ``2026-12-02``); None for other names."""
    match = _DATE_VERSION.match(version)
    return "-".join(f"{int(part):02d}" for part in match.groups()[:3]) if match else None


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


def _bboxes_field(record_set: str, source: str) -> dict[str, Any]:
    """``bboxes``: a repeated field, one record per box, its sub-fields read from each box's struct."""
    field = _field(record_set, source, "bboxes", "", "The image's boxes from BBox_List_2017.csv (most have none).")
    del field["dataType"]
    field["repeated"] = True
    field["subField"] = []
    for name, (kind, text) in BOX_COLUMNS.items():
        sub = _field(f"{record_set}/bboxes", source, "bboxes", kind, text)
        sub |= {"@id": f"{record_set}/bboxes/{name}", "name": name}
        sub["source"]["transform"] = {"jsonPath": name}
        field["subField"].append(sub)
    return field


def _fields(record_set: str, source: str, columns: Collection[str]) -> list[dict[str, Any]]:
    """The fields of the columns the files have: the ones of :data:`COLUMNS`, the findings, ``bboxes``."""
    fields = [
        _field(record_set, source, col, kind, text, repeated=col in REPEATED)
        for col, (kind, text) in COLUMNS.items()
        if col in columns
    ]
    for column, label in zip(FINDING_COLUMNS, nih.FINDINGS, strict=True):
        if column in columns:
            fields.append(_field(record_set, source, column, "sc:Boolean", f"True when the image carries {label}."))
    return [*fields, *([_bboxes_field(record_set, source)] if "bboxes" in columns else [])]


def _distribution(files: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        _file_object("metadata.parquet", files["metadata.parquet"], "One row per image, without pixels."),
        _file_object("quarantine.parquet", files["quarantine.parquet"], "Source items left out, with reasons."),
        _file_set(
            "parquet-files",
            [f"parquet/split={s}/*.parquet" for s in SPLITS],
            PARQUET,
            "One row per image with the PNG bytes in column `image` and the small copy in `image_small`, "
            "partitioned by split.",
        ),
        _file_set(
            "webdataset-shards",
            [f"webdataset/{s}/*.tar" for s in SPLITS],
            "application/x-tar",
            "WebDataset shards: <id>.png, <id>.small.png (the small copy), <id>.json (the metadata row), "
            "<id>.labels.npy (15 uint8, the 14 findings then no_finding, in the order of the label columns).",
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


def _images_record_set(columns: Collection[str]) -> dict[str, Any]:
    fields = _fields("images", "parquet-files", columns)
    pixels = [
        _field("images", "parquet-files", col, "sc:ImageObject", text)
        for col, text in IMAGE_COLUMNS.items()
        if col in columns
    ]
    return {
        "@type": "cr:RecordSet",
        "@id": "images",
        "name": "images",
        "description": "Every image of the release with its metadata, the full PNG (`image`) and the small copy "
        "(`image_small`).",
        "key": {"@id": "images/image_id"},
        "field": [*fields, *pixels],
    }


def build_croissant(
    manifest: dict[str, Any],
    files: dict[str, dict[str, Any]],
    url: str,
    *,
    metadata_columns: Collection[str] | None = None,
    part_columns: Collection[str] | None = None,
) -> dict[str, Any]:
    """The Croissant JSON-LD of a release.

    Args:
        manifest: The release's manifest fields known so far (version, counts, ``annotations``, ...).
        files: Release-relative path -> manifest file entry (needs ``metadata.parquet``, ``quarantine.parquet`` and
            each layer's ``annotations/<id>.parquet``).
        url: Where the release lives (``s3://bucket/prefix/releases/<version>/``).
        metadata_columns: The columns of ``metadata.parquet`` (default: :func:`metadata_schema`'s); only columns
            the file has are described.
        part_columns: The columns of the Parquet parts (default: :func:`release_schema`'s).
    """
    meta_cols = set(metadata_schema().names if metadata_columns is None else metadata_columns)
    part_cols = set(release_schema().names if part_columns is None else part_columns)
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
                "description": "One record per image: patient, labels (NIH's list and one boolean per label "
                "column), boxes, pixel spacing, split; no pixels.",
                "key": {"@id": "metadata/image_id"},
                "field": _fields("metadata", "metadata.parquet", meta_cols),
            },
            _images_record_set(part_cols),
            *(_layer_record_set(lay, path) for lay, path in layers),
        ],
    }
    doc["version"] = version
    if date_published(version):
        doc["datePublished"] = date_published(version)
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
