"""Curate stage: load the metadata files, normalise them, validate them, and keep the result.

Writes into the run's workspace ``runs/<run>/``: ``data_entry.parquet`` (the normalised table),
``bboxes.parquet`` (with each box's source ``line``), ``split_lists.json``, ``row_quarantine.parquet`` and
``validation/``: the results as JSON (``results.json``), a short text summary (``summary.txt``) and Great
Expectations Data Docs that render offline (``data_docs/index.html`` and one page per suite). The release
copies ``validation/`` as it is. The validation results are written before a blocking failure stops the run,
so they can be read afterwards.

Files curated beyond these (annotation layers, :mod:`pipeline.layers.curation`) come in through an
:class:`ExtraFiles` hook: their suite runs join the same validation report (a blocking failure in them stops the
run as well) and their tables are kept beside the others.

Each file is refused before it is read when it is over its kind's size limit
(``pipeline.ingest.files.MAX_FILE_BYTES``).
A row-level defect of an auxiliary file (box list, split lists) costs that row only: the row is left out of
``bboxes.parquet`` / ``split_lists.json`` and listed in ``row_quarantine.parquet``
(``quarantine.ROW_DEFECT_COLUMNS``: file, line, image name, reason), which the plan adds to the release's
quarantine. Row-level defects of Data_Entry stay blocking.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from pipeline.curate import datadocs, metadata, outcomes, quarantine, reading, validate
from pipeline.ingest.files import FileRef, read_file
from pipeline.ingest.sources import SourceListing
from pipeline.store.layout import run_prefix
from pipeline.store.storage import Store
from pipeline.store.tables import put_frame, put_json

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
    quarantined_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # what the extra files' hook reports (e.g. layer ids)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True)
class Extra:
    """What an :data:`ExtraFiles` hook curated: suite runs, variants and notes per file, SHA-256 per file (keyed as
    the release's fingerprint should name them), and the frames and JSON documents to keep in the workspace
    (relative to ``runs/<run>/``)."""

    runs: list[outcomes.SuiteRun] = field(default_factory=list)
    variants: dict[str, str] = field(default_factory=dict)
    notes: dict[str, dict[str, int]] = field(default_factory=dict)
    file_sha256: dict[str, str] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


#: Curates further files of a source against the loaded Data_Entry table (called by :func:`load_all`).
ExtraFiles = Callable[[SourceListing, metadata.LoadedTable], Extra]


@dataclass(frozen=True)
class LoadedMetadata:
    """The loaded, normalised metadata of a source and its validation report."""

    report: outcomes.ValidationReport
    entry: metadata.LoadedTable
    bboxes: pd.DataFrame
    lists: dict[str, list[str]]
    file_sha256: dict[str, str]
    rejected: pd.DataFrame = field(default_factory=quarantine.empty_row_defects)
    extra: Extra = field(default_factory=Extra)


def _read(ref: FileRef, hashes: dict[str, str], kind: str) -> bytes:
    data = read_file(ref, kind)
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


def _split_lists(
    listing: SourceListing, hashes: dict[str, str], known: set[str]
) -> tuple[outcomes.SuiteRun, dict[str, list[str]]]:
    """Load and validate both split lists; return the run and the lists without their quarantined lines."""
    refs = {"train_val": listing.train_val, "test": listing.test}
    entries = {role: reading.split_list_entries(_read(ref, hashes, "split_list"), ref.name)
               for role, ref in refs.items() if ref is not None}  # fmt: skip
    files = {role: ref.name for role, ref in refs.items() if ref is not None}
    run = validate.validate_split_lists(entries["train_val"], entries["test"], known, files)
    lists = {}
    for role, items in entries.items():
        bad = quarantine.quarantined_lines(run.defects, files[role])
        lists[role] = [name for line, name in items if line not in bad]
    return run, lists


def load_all(listing: SourceListing, extra_files: ExtraFiles | None = None) -> LoadedMetadata:
    """Load and validate every metadata file of a source; quarantine the defective rows of auxiliary files.

    ``extra_files`` curates further files (annotation layers) against the Data_Entry table; its runs join the report.

    Raises:
        UnreadableFileError, UnknownHeaderError (``pipeline.errors``): a file cannot be read or recognised, is
            over its size limit (``FileTooLargeError``) or mostly defective (``DefectiveFileError``).
    """
    hashes: dict[str, str] = {}
    entry_data = _read(listing.data_entry, hashes, "data_entry")
    entry = metadata.load_data_entry(entry_data, listing.data_entry.name)
    known = set(entry.frame["image_index"])
    runs = [validate.validate_data_entry(entry)]
    variants = {listing.data_entry.name: entry.variant}
    notes = {listing.data_entry.name: entry.notes}
    boxes = _empty_bboxes()
    if listing.bbox is not None:
        table = metadata.load_bboxes(_read(listing.bbox, hashes, "bbox"), listing.bbox.name)
        runs.append(validate.validate_bboxes(table, known))
        variants[listing.bbox.name] = table.variant
        notes[listing.bbox.name] = table.notes
        boxes = table.frame.assign(line=pd.Series(table.line_numbers(), index=table.frame.index, dtype="int64"))
        if runs[-1].defects is not None:
            boxes = boxes[~boxes["line"].isin(quarantine.quarantined_lines(runs[-1].defects, listing.bbox.name))]
            boxes = boxes.reset_index(drop=True)
    lists: dict[str, list[str]] = {}
    if listing.train_val is not None and listing.test is not None:
        run, lists = _split_lists(listing, hashes, known)
        runs.append(run)
        variants |= {listing.train_val.name: "split_list/names", listing.test.name: "split_list/names"}
    elif listing.train_val is not None or listing.test is not None:
        log.warning("only one split list found: both train_val_list.txt and test_list.txt are needed; ignoring it")
    extra = extra_files(listing, entry) if extra_files is not None else Extra()
    runs += extra.runs
    variants |= extra.variants
    notes |= extra.notes
    hashes |= extra.file_sha256
    report = outcomes.ValidationReport.from_runs(runs, variants, {name: n for name, n in notes.items() if n})
    return LoadedMetadata(report, entry, boxes, lists, hashes, report.row_defects, extra)


def write_validation(store: Store, prefix: str, report: outcomes.ValidationReport) -> None:
    """Write ``<prefix>/validation/``: results.json, summary.txt and the offline Data Docs."""
    put_json(store, f"{prefix}/validation/results.json", report.to_json())
    store.put_bytes(f"{prefix}/validation/summary.txt", report.summary_text().encode(), content_type="text/plain")
    for name, page in datadocs.build_data_docs(report.runs, report.variants).items():
        store.put_bytes(f"{prefix}/validation/data_docs/{name}", page, content_type="text/html; charset=utf-8")


def curate(store: Store, listing: SourceListing, run_id: str, extra_files: ExtraFiles | None = None) -> CurateResult:
    """Run the curate stage for one run (``extra_files``: see :func:`load_all`).

    Raises:
        BlockingValidationError: a blocking expectation failed (nothing is published).
    """
    curated = load_all(listing, extra_files)
    report, entry = curated.report, curated.entry
    prefix = run_prefix(run_id)
    write_validation(store, prefix, report)
    log.info("validation of %s:\n%s", listing.source, report.summary_text())
    outcomes.raise_if_blocking(report)
    put_frame(store, f"{prefix}/data_entry.parquet", entry.frame)
    put_frame(store, f"{prefix}/bboxes.parquet", curated.bboxes)
    put_json(store, f"{prefix}/split_lists.json", curated.lists)
    put_frame(store, f"{prefix}/row_quarantine.parquet", curated.rejected)
    if len(curated.rejected):
        log.warning(
            "%d row(s) of the auxiliary files quarantined (each with its file, line and reason):\n%s",
            len(curated.rejected),
            "\n".join(
                quarantine.row_defect_text(r) for r in curated.rejected.head(outcomes.ROWS_LISTED).to_dict("records")
            ),
        )
    put_json(store, f"{prefix}/metadata_notes.json", {"variant": entry.variant, "notes": entry.notes})
    for rel, frame in curated.extra.frames.items():
        put_frame(store, f"{prefix}/{rel}", frame)
    for rel, document in curated.extra.documents.items():
        put_json(store, f"{prefix}/{rel}", document)
    bbox_file = listing.bbox.name if listing.bbox is not None else None
    return CurateResult(
        listing.data_entry.name,
        len(entry.frame),
        len(curated.bboxes),
        entry.variant,
        len(report.warnings),
        curated.file_sha256,
        bbox_file,
        len(curated.rejected),
        curated.extra.summary,
    )
