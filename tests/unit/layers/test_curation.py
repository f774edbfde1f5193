"""The curate stage's part for layers: each layer read, loaded, checked; its runs, hashes and tables handed back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.curate.metadata import LoadedTable, load_data_entry
from pipeline.errors import FileTooLargeError, UnknownHeaderError
from pipeline.ingest.files import FileRef, local_ref
from pipeline.ingest.sources import AnnotationRef, SourceListing
from pipeline.layers.curation import LAYERS_DOCUMENT, curate_layers, layer_table_name, sha256_key

ENTRY = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
    "00000001_000.png,No Finding,0,1,50,M,PA\n"
    "00000002_000.png,Effusion,0,2,40,F,AP\n"
)


def _listing(refs: tuple[AnnotationRef, ...], entry: FileRef) -> SourceListing:
    return SourceListing("/src", (), entry, None, None, None, annotations=refs)


def _entry(tmp_path: Path) -> tuple[FileRef, LoadedTable]:
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(ENTRY)
    return local_ref(path), load_data_entry(path.read_bytes(), path.name)


def test_each_layer_comes_back_with_its_run_hashes_and_table(tmp_path: Path) -> None:
    ref, entry = _entry(tmp_path)
    google = tmp_path / "test_labels.csv"
    google.write_text(
        "Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass\n"
        "00000001_000.png,1,NO,YES,,NO\n"
        "00000002_000.png,7,NO,NO,NO,NO\n"  # Data_Entry says patient 2: this row is quarantined
    )
    quality = tmp_path / "quality.csv"
    quality.write_text("file,grade\n00000001_000.png,good\n")
    spec = tmp_path / "quality.layer.json"
    spec.write_text(json.dumps({"id_column": "file", "labels": {"grade": {"type": "string", "values": ["good"]}}}))
    layers = (
        AnnotationRef("google", (local_ref(google),)),
        AnnotationRef("quality", (local_ref(quality),), local_ref(spec)),
    )
    extra = curate_layers(_listing(layers, ref), entry)
    assert [run.suite for run in extra.runs] == ["layer_google", "layer_quality"]
    assert extra.file_sha256[sha256_key("google", "test_labels.csv")] == hashlib.sha256(google.read_bytes()).hexdigest()
    assert sha256_key("quality", "quality.layer.json") in extra.file_sha256
    kept = extra.frames[layer_table_name("google")]
    assert kept["image_index"].tolist() == ["00000001_000.png"]
    defects = extra.runs[0].defects
    assert defects is not None
    assert defects["image_index"].tolist() == ["00000002_000.png"]
    assert [layer["id"] for layer in extra.documents[LAYERS_DOCUMENT]] == ["google", "quality"]
    assert extra.variants["test_labels.csv (layer google)"] == "expert_labels/google2019"
    assert extra.summary == {"layers": ["google", "quality"]}


def test_no_layers_curate_nothing(tmp_path: Path) -> None:
    ref, entry = _entry(tmp_path)
    extra = curate_layers(_listing((), ref), entry)
    assert (extra.runs, extra.frames, extra.documents) == ([], {}, {})


def test_an_unknown_header_and_an_oversized_file_are_refused_by_name(tmp_path: Path) -> None:
    ref, entry = _entry(tmp_path)
    odd = tmp_path / "odd.csv"
    odd.write_text("image,score\n00000001_000.png,3\n")
    with pytest.raises(UnknownHeaderError, match=r"odd\.csv: unknown annotation layer header"):
        curate_layers(_listing((AnnotationRef("odd", (local_ref(odd),)),), ref), entry)
    huge = FileRef("huge.csv", str(odd), 1 << 40, "x")
    with pytest.raises(FileTooLargeError, match=r"odd\.csv"):
        curate_layers(_listing((AnnotationRef("big", (huge,)),), ref), entry)
