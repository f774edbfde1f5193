"""Curate stage: load the metadata files, normalise them, validate them, and keep the result.

Writes into the run's workspace ``runs/<run>/``: ``data_entry.parquet`` (the normalised table),
``bboxes.parquet`` (with each box's source ``line``), ``split_lists.json`` and ``validation/``: the results as
JSON (``results.json``), a short text summary (``summary.txt``) and Great Expectations Data Docs that render
offline (``data_docs/index.html`` and one page per suite). The release copies ``validation/`` as it is.
The validation results are written before a blocking failure stops the run, so they can be read afterwards.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from pipeline import datadocs, metadata, validate
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
    bbox_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True)
class LoadedMetadata:
    """The loaded, normalised metadata of a source and its validation report."""

    report: validate.ValidationReport
    entry: metadata.LoadedTable
    bboxes: pd.DataFrame
    lists: dict[str, list[str]]
    file_sha256: dict[str, str]


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
            "line": pd.Series([], dtype="int64"),
        }
    )


def load_all(listing: SourceListing) -> LoadedMetadata:
    """Load and validate every metadata file of a source.

    Raises:
        metadata.UnreadableFileError, metadata.UnknownHeaderError: a file cannot be read or recognised.
    """
    hashes: dict[str, str] = {}
    entry = metadata.load_data_entry(_read(listing.data_entry, hashes), listing.data_entry.name)
    known = set(entry.frame["image_index"])
    runs = [validate.validate_data_entry(entry)]
    variants = {listing.data_entry.name: entry.variant}
    notes = {listing.data_entry.name: entry.notes}
    boxes = _empty_bboxes()
    if listing.bbox is not None:
        table = metadata.load_bboxes(_read(listing.bbox, hashes), listing.bbox.name)
        runs.append(validate.validate_bboxes(table, known))
        variants[listing.bbox.name] = table.variant
        notes[listing.bbox.name] = table.notes
        boxes = table.frame.assign(line=pd.Series(table.line_numbers(), index=table.frame.index, dtype="int64"))
    lists: dict[str, list[str]] = {}
    if listing.train_val is not None and listing.test is not None:
        lists["train_val"] = metadata.load_split_list(_read(listing.train_val, hashes), listing.train_val.name)
        lists["test"] = metadata.load_split_list(_read(listing.test, hashes), listing.test.name)
        runs.append(validate.validate_split_lists(lists["train_val"], lists["test"], known))
        variants |= {listing.train_val.name: "split_list/names", listing.test.name: "split_list/names"}
    elif listing.train_val is not None or listing.test is not None:
        log.warning("only one split list found: both train_val_list.txt and test_list.txt are needed; ignoring it")
    report = validate.ValidationReport.from_runs(runs, variants, {name: n for name, n in notes.items() if n})
    return LoadedMetadata(report, entry, boxes, lists, hashes)


def write_validation(store: Store, prefix: str, report: validate.ValidationReport) -> None:
    """Write ``<prefix>/validation/``: results.json, summary.txt and the offline Data Docs."""
    put_json(store, f"{prefix}/validation/results.json", report.to_json())
    store.put_bytes(f"{prefix}/validation/summary.txt", report.summary_text().encode(), content_type="text/plain")
    for name, page in datadocs.build_data_docs(report.runs, report.variants).items():
        store.put_bytes(f"{prefix}/validation/data_docs/{name}", page, content_type="text/html; charset=utf-8")


def curate(store: Store, listing: SourceListing, run_id: str) -> CurateResult:
    """Run the curate stage for one run.

    Raises:
        validate.BlockingValidationError: a blocking expectation failed (nothing is published).
    """
    curated = load_all(listing)
    report, entry = curated.report, curated.entry
    prefix = run_prefix(run_id)
    write_validation(store, prefix, report)
    log.info("validation of %s:\n%s", listing.source, report.summary_text())
    validate.raise_if_blocking(report)
    put_frame(store, f"{prefix}/data_entry.parquet", entry.frame)
    put_frame(store, f"{prefix}/bboxes.parquet", curated.bboxes)
    put_json(store, f"{prefix}/split_lists.json", curated.lists)
    put_json(store, f"{prefix}/metadata_notes.json", {"variant": entry.variant, "notes": entry.notes})
    bbox_file = listing.bbox.name if listing.bbox is not None else None
    return CurateResult(
        listing.data_entry.name,
        len(entry.frame),
        len(curated.bboxes),
        entry.variant,
        len(report.warnings),
        curated.file_sha256,
        bbox_file,
    )
