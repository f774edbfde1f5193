"""Curate stage: load the metadata files, normalise them, validate them, and keep the result.

Writes into the run's workspace ``runs/<run>/``: ``data_entry.parquet`` (the normalised table),
``bboxes.parquet``, ``split_lists.json`` and ``validation/`` (results as JSON, a text summary).
The validation results are written before a blocking failure stops the run, so they can be read afterwards.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from pipeline import metadata, validate
from pipeline.sources import FileRef, SourceListing, read_file
from pipeline.storage import Store
from pipeline.workspace import put_frame, put_json, run_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurateResult:
    """Summary of the curate stage (goes through XCom)."""

    data_entry_file: str
    rows: int
    bboxes: int
    variant: str
    warnings: int
    file_sha256: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


def _read(ref: FileRef, hashes: dict[str, str]) -> bytes:
    data = read_file(ref)
    hashes[ref.name] = hashlib.sha256(data).hexdigest()
    return data


def _empty_bboxes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_index": pd.Series([], dtype=str),
            "label": pd.Series([], dtype=str),
            **{c: pd.Series([], dtype="float64") for c in ("x", "y", "w", "h")},
        }
    )


def load_all(listing: SourceListing) -> tuple[validate.ValidationReport, dict[str, Any], dict[str, str]]:
    """Load and validate every metadata file of a source; return the report, tables and file hashes."""
    hashes: dict[str, str] = {}
    entry = metadata.load_data_entry(_read(listing.data_entry, hashes), listing.data_entry.name)
    known = set(entry.frame["image_index"])
    outcomes = list(validate.validate_data_entry(entry))
    variants = {listing.data_entry.name: entry.variant}
    boxes = _empty_bboxes()
    if listing.bbox is not None:
        table = metadata.load_bboxes(_read(listing.bbox, hashes), listing.bbox.name)
        outcomes += validate.validate_bboxes(table, known)
        variants[listing.bbox.name] = table.variant
        boxes = table.frame
    lists: dict[str, list[str]] = {}
    if listing.train_val is not None and listing.test is not None:
        lists["train_val"] = metadata.load_split_list(_read(listing.train_val, hashes), listing.train_val.name)
        lists["test"] = metadata.load_split_list(_read(listing.test, hashes), listing.test.name)
        outcomes += validate.validate_split_lists(lists["train_val"], lists["test"], known)
    report = validate.ValidationReport(outcomes=outcomes, variants=variants)
    return report, {"entry": entry, "bboxes": boxes, "lists": lists}, hashes


def curate(store: Store, listing: SourceListing, run_id: str) -> CurateResult:
    """Run the curate stage for one run.

    Raises:
        validate.BlockingValidationError: a blocking expectation failed (nothing is published).
    """
    report, tables, hashes = load_all(listing)
    prefix = run_prefix(run_id)
    put_json(store, f"{prefix}/validation/results.json", report.to_json())
    store.put_bytes(f"{prefix}/validation/summary.txt", report.summary_text().encode(), content_type="text/plain")
    log.info("validation of %s:\n%s", listing.source, report.summary_text())
    validate.raise_if_blocking(report)
    entry: metadata.LoadedTable = tables["entry"]
    put_frame(store, f"{prefix}/data_entry.parquet", entry.frame)
    put_frame(store, f"{prefix}/bboxes.parquet", tables["bboxes"])
    put_json(store, f"{prefix}/split_lists.json", tables["lists"])
    put_json(store, f"{prefix}/metadata_notes.json", {"variant": entry.variant, "notes": entry.notes})
    return CurateResult(
        listing.data_entry.name, len(entry.frame), len(tables["bboxes"]), entry.variant, len(report.warnings), hashes
    )
