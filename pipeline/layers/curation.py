"""The curate stage's part for annotation layers: read, load and check each layer a run names.

:func:`curate_layers` is the :data:`pipeline.curate.curation.ExtraFiles` hook the run's curate task passes: each
layer's files are read (refused over their size limit before a byte is read), loaded by their format
(:mod:`pipeline.layers.load`) and checked against the Data_Entry table (:mod:`pipeline.layers.checks`). Their suite
runs join the run's validation report, so a blocking failure in a layer stops the run like one in any other file,
and their quarantined rows join the row quarantine (kind ``layer``). Kept in the run's workspace:
``layers/<id>.parquet`` (the rows that passed, one per image, or per box) and ``layers.json`` (each
:class:`~pipeline.layers.schema.Layer`). Each file's SHA-256 enters the release's fingerprint as
``annotation:<id>:<file name>``, so a changed layer file, a new layer or another id is a new release.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.curate.curation import Extra
from pipeline.curate.metadata import LoadedTable
from pipeline.ingest.files import read_file
from pipeline.ingest.sources import AnnotationRef, SourceListing
from pipeline.layers.checks import CheckedLayer, check_layer
from pipeline.layers.load import LayerInput, load_layer

__all__ = ["LAYERS_DOCUMENT", "curate_layers", "layer_table_name", "sha256_key"]

log = logging.getLogger(__name__)

#: The workspace file listing a run's layers (``runs/<run>/layers.json``).
LAYERS_DOCUMENT = "layers.json"


def layer_table_name(layer_id: str) -> str:
    """``layers/<id>.parquet``: a layer's checked rows in the run's workspace."""
    return f"layers/{layer_id}.parquet"


def sha256_key(layer_id: str, name: str) -> str:
    """How the fingerprint names a layer file: ``annotation:<id>:<file name>``."""
    return f"annotation:{layer_id}:{name}"


def _checked(ref: AnnotationRef, entry: LoadedTable) -> CheckedLayer:
    inputs = [LayerInput(f.name, f.location, read_file(f, "annotation")) for f in ref.files]
    spec = LayerInput(ref.spec.name, ref.spec.location, read_file(ref.spec, "layer_spec")) if ref.spec else None
    return check_layer(load_layer(ref.id, inputs, spec), entry.frame)


def curate_layers(listing: SourceListing, entry: LoadedTable) -> Extra:
    """Load and check every annotation layer of the run against the Data_Entry table.

    Raises:
        UnreadableFileError, UnknownHeaderError, LayerSpecError, DefectiveFileError (``pipeline.errors``): a layer
            file cannot be read, is over its size limit, has a header of no known format and no spec, a spec that
            breaks the rules, or mostly defective rows.
    """
    extra = Extra()
    layers: list[dict[str, Any]] = []
    for ref in listing.annotations:
        checked = _checked(ref, entry)
        layer = checked.layer
        extra.runs.append(checked.run)
        for file in (*layer.files, *([layer.spec] if layer.spec else [])):
            extra.file_sha256[sha256_key(layer.id, file.name)] = file.sha256
        for file in layer.files:
            extra.variants[f"{file.name} (layer {layer.id})"] = f"{layer.kind}/{layer.variant}"
        if layer.notes:
            extra.notes[f"layer {layer.id}"] = dict(layer.notes)
        extra.frames[layer_table_name(layer.id)] = checked.table
        layers.append(layer.to_dict())
        log.info(
            "annotation layer %s: %s (%s), %d rows kept from %s",
            layer.id,
            layer.kind,
            layer.variant,
            len(checked.table),
            ", ".join(f.name for f in layer.files),
        )
    if layers:
        extra.documents[LAYERS_DOCUMENT] = layers
    extra.summary["layers"] = [layer["id"] for layer in layers]
    return extra
