"""Convert stage: one unit of a split into a WebDataset tar shard and Parquet file(s).

Writes, under ``releases/<version>/``::

    webdataset/<split>/<split>-NNNNNN.tar          <image_id>.png, .json, .labels.npy per sample
    parquet/split=<split>/<split>-NNNNNN-KK.parquet  one row per image, PNG bytes in ``image``

Images keep their original bytes when they are 8-bit grayscale; others are converted once. Every image is
proven decodable first (:func:`pipeline.png.process_image`); one that is not is left out of the unit and
quarantined with its reason, shard and member (``undecodable_image``), and the rest of the unit is published.
Output is byte-reproducible: sorted order, fixed tar mtime/owner, deterministic Parquet.
Unit results (files with size, sha256, rows; md5 for tar shards; per-image digests; the quarantine rows of
images that could not be decoded) go to ``runs/<run>/units/<unit>.json``.
"""

from __future__ import annotations

import ctypes
import functools
import io
import json
import logging
import multiprocessing
import os
import platform
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import faults, nih
from pipeline import png as images
from pipeline.config import RunConfig
from pipeline.convert.tarstream import TarStream
from pipeline.plan.planning import Plan, Unit
from pipeline.progress import Progress
from pipeline.store.multipart import MultipartWriter, Uploaded
from pipeline.store.storage import Store
from pipeline.store.workspace import get_json, get_table, put_json, release_prefix, run_prefix

log = logging.getLogger(__name__)

BBOX_TYPE = pa.list_(
    pa.struct(
        [("label", pa.string()), ("x", pa.float64()), ("y", pa.float64()), ("w", pa.float64()), ("h", pa.float64())]
    )
)
FINDING_COLUMNS = tuple(nih.finding_column(label) for label in nih.FINDINGS)
#: Quarantine reason code and wording of an image that cannot be decoded (found here, after the plan's cross-check).
UNDECODABLE = "undecodable_image"
CONVERT_QUARANTINE_REASONS = {UNDECODABLE: "image cannot be decoded (found at conversion)"}


def release_schema() -> pa.Schema:
    """The schema of every Parquet file of a release (the metadata-only file drops ``image``)."""
    fields = [
        ("image_id", pa.string()),
        ("image_index", pa.string()),
        ("patient_id", pa.int64()),
        ("follow_up", pa.int64()),
        ("age_years", pa.float64()),
        ("sex", pa.string()),
        ("view_position", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("no_finding", pa.bool_()),
        *[(col, pa.bool_()) for col in FINDING_COLUMNS],
        ("bboxes", BBOX_TYPE),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("pixel_spacing_x", pa.float64()),
        ("pixel_spacing_y", pa.float64()),
        ("split", pa.string()),
        ("source_shard", pa.string()),
        ("original_mode", pa.string()),
        ("converted", pa.bool_()),
        ("repaired", pa.string()),
        ("sha256", pa.string()),
        ("image", pa.binary()),
        ("image_small", pa.binary()),
    ]
    return pa.schema(fields)


PIXEL_COLUMNS = ("image", "image_small")


def metadata_schema() -> pa.Schema:
    """The release schema without pixel columns (``metadata.parquet``)."""
    return pa.schema([f for f in release_schema() if f.name not in PIXEL_COLUMNS])


@dataclass(frozen=True)
class Sample:
    """One image ready to publish."""

    record: dict[str, Any]
    png: bytes
    small: bytes | None = None


@dataclass(frozen=True)
class Rejected:
    """One image left out of its unit because it cannot be decoded: its quarantine row."""

    row: dict[str, str]


def rejected(row: dict[str, Any], problem: images.UndecodableImageError) -> Rejected:
    """The quarantine row (``crosscheck.QUARANTINE_COLUMNS``) of a plan row whose image cannot be decoded."""
    member = str(row.get("member") or row["key"])
    log.warning(
        "image %s (member %s of %s) cannot be decoded: %s; quarantined, not published",
        row["image_index"],
        member,
        row["shard"],
        problem,
    )
    reason = f"image cannot be decoded: {problem}"
    return Rejected(
        {
            "source": row["shard"],
            "member": member,
            "image_index": row["image_index"],
            "reason": reason,
            "reason_code": UNDECODABLE,
        }
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "" else str(value)


def to_record(row: dict[str, Any], sha256: str, converted: bool) -> dict[str, Any]:
    """Build one published row from a plan row and the sha256 of its published PNG bytes."""
    labels = [str(x) for x in row["labels"]]
    record: dict[str, Any] = {
        "image_id": row["image_index"].removesuffix(".png"),
        "image_index": row["image_index"],
        "patient_id": int(row["patient_id"]),
        "follow_up": int(row["follow_up"]),
        "age_years": _opt_float(row["age_years"]),
        "sex": row["sex"],
        "view_position": row["view_position"],
        "labels": labels,
        "no_finding": nih.NO_FINDING in labels,
        **{col: label in labels for col, label in zip(FINDING_COLUMNS, nih.FINDINGS, strict=True)},
        "bboxes": [dict(b) for b in row["bboxes"]],
        "original_width": _opt_int(row["original_width"]),
        "original_height": _opt_int(row["original_height"]),
        "pixel_spacing_x": _opt_float(row["pixel_spacing_x"]),
        "pixel_spacing_y": _opt_float(row["pixel_spacing_y"]),
        "split": row["split"],
        "source_shard": row["shard"],
        "original_mode": row["mode"],
        "converted": converted,
        "repaired": _opt_str(row.get("repaired")),  # what extraction cut (bytes after IEND), else null
        "sha256": sha256,
    }
    return record


@functools.cache
def _bound_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for this process (what ``MALLOC_ARENA_MAX=2`` does) before the fetch threads start.

    Image buffers are allocated in the fetch threads and freed in this one; with an arena per thread the
    freed space scatters and RSS creeps up with every unit converted. Capped, it stays flat (see
    ``benchmarks/convert_memory.py``). A no-op where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    m_arena_max = -8  # from glibc's malloc.h
    ctypes.CDLL(None).mallopt(m_arena_max, arenas)


def _pool_context() -> multiprocessing.context.BaseContext | None:
    """The context for decoding workers, or None where no child processes may be started.

    Workers are forked: spawn and forkserver re-import the ``__main__`` module in every worker, which under
    ``airflow tasks run`` imports Airflow there (and fails). They are forked before this unit starts any
    thread (see :class:`_Processor`) and only run :func:`images.process_image`. Daemonic processes (Celery's
    prefork pool) may not have children at all: they process in-thread.
    """
    if multiprocessing.current_process().daemon:
        return None
    return multiprocessing.get_context("fork")


@dataclass(frozen=True)
class UnitRows:
    """One unit's plan rows, kept columnar (a few hundred bytes an image) and turned into dicts a batch at a
    time, so the memory of a unit does not grow with its number of images."""

    table: pa.Table

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.table.to_batches(max_chunksize=256):
            yield from batch.to_pylist()

    @property
    def all_gray8(self) -> bool:
        """True when every image is 8-bit single-channel (nothing to decode unless a variant is asked for)."""
        return bool(pc.all(pc.equal(self.table["mode"], "L")).as_py() is not False)


class _Processor:
    """Runs :func:`images.process_image` in the fetching threads, or in a process pool when images must be
    decoded (hashing, CRCs and the inflate of the decodability check release the GIL; a decode holds it too long
    to share one process)."""

    def __init__(self, images: int, all_gray8: bool, variant_size: int | None) -> None:
        self.variant_size = variant_size
        needs_decode = bool(variant_size) or not all_gray8
        workers = min(os.cpu_count() or 1, 8)
        context = _pool_context() if needs_decode and workers > 1 and images > 16 else None
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context) if context is not None else None
        if self.pool is not None:
            self.pool.submit(int).result()  # fork every worker now, before the fetch threads exist

    def run(self, row: dict[str, Any], data: bytes) -> images.Processed:
        """Process one image in this thread."""
        return images.process_image(data, row["sha256"], row["key"], self.variant_size)

    def submit(self, row: dict[str, Any], data: bytes) -> Future[images.Processed]:
        """Process one image in the pool."""
        assert self.pool is not None
        return self.pool.submit(images.process_image, data, row["sha256"], row["key"], self.variant_size)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


_Fetched = tuple[bytes, "Future[images.Processed] | None"]


def _fetch(store: Store, rows: UnitRows, cfg: RunConfig) -> Iterator[Sample | Rejected]:
    """Yield samples in row order through a bounded pipeline: fetch (and check) ahead in threads, decode in
    processes when something must be decoded."""
    window = max(16, 2 * cfg.upload_workers)
    processor = _Processor(len(rows), rows.all_gray8, cfg.variant_size)
    _bound_malloc_arenas()

    def fetch(row: dict[str, Any]) -> _Fetched:
        data = store.get_bytes(row["key"])
        return data, None if processor.pool is not None else _settled(processor, row, data)

    fetching: deque[tuple[dict[str, Any], Future[_Fetched]]] = deque()
    processing: deque[tuple[dict[str, Any], bytes, Future[images.Processed]]] = deque()

    def advance() -> None:
        row, fetched = fetching.popleft()
        data, done = fetched.result()
        processing.append((row, data, processor.submit(row, data) if done is None else done))

    try:
        with ThreadPoolExecutor(max_workers=cfg.upload_workers, thread_name_prefix="fetch") as pool:
            for row in rows:
                fetching.append((row, pool.submit(fetch, row)))
                while len(fetching) > window or (fetching and fetching[0][1].done()):
                    advance()
                while len(processing) > window or (processing and processing[0][2].done()):
                    yield _sample(*processing.popleft())
            while fetching:
                advance()
            while processing:
                yield _sample(*processing.popleft())
    finally:
        processor.close()


def _settled(processor: _Processor, row: dict[str, Any], data: bytes) -> Future[images.Processed]:
    """Process one image in this thread; its outcome (result or an undecodable image) as a done future."""
    done: Future[images.Processed] = Future()
    try:
        done.set_result(processor.run(row, data))
    except images.UndecodableImageError as exc:
        done.set_exception(exc)
    return done


def _sample(row: dict[str, Any], data: bytes, future: Future[images.Processed]) -> Sample | Rejected:
    try:
        done = future.result()
    except images.UndecodableImageError as exc:
        return rejected(row, exc)
    return Sample(to_record(row, done.sha256, done.converted), data if done.png is None else done.png, done.small)


def write_sample(tar: TarStream, sample: Sample) -> None:
    """Add one sample's ``.png``, ``.json`` and ``.labels.npy`` members (and ``.small.png``)."""
    key = sample.record["image_id"]
    meta = {k: v for k, v in sample.record.items() if k not in PIXEL_COLUMNS}
    vector = np.array([sample.record[c] for c in FINDING_COLUMNS] + [sample.record["no_finding"]], dtype=np.uint8)
    npy = io.BytesIO()
    np.save(npy, vector, allow_pickle=False)
    tar.add(f"{key}.png", sample.png)
    tar.add(f"{key}.json", json.dumps(meta, sort_keys=True).encode())
    tar.add(f"{key}.labels.npy", npy.getvalue())
    if sample.small is not None:
        tar.add(f"{key}.small.png", sample.small)


class ParquetParts:
    """Streams rows into Parquet files of bounded size, with row groups of bounded bytes, each file uploaded
    to the store while it is written (a multipart upload)."""

    def __init__(self, store: Store, prefix: str, stem: str, cfg: RunConfig) -> None:
        self.store, self.prefix, self.stem, self.cfg = store, prefix, stem, cfg
        self.schema = release_schema()
        self.files: list[dict[str, Any]] = []
        self._batch: list[dict[str, Any]] = []
        self._batch_bytes = self._file_bytes = self._rows = 0
        self._sink: MultipartWriter | None = None
        self._file: pa.PythonFile | None = None
        self._writer: pq.ParquetWriter | None = None

    def add(self, sample: Sample) -> None:
        """Queue one row; a full row group is written out."""
        self._batch.append({**sample.record, "image": sample.png, "image_small": sample.small})
        self._batch_bytes += len(sample.png) + len(sample.small or b"")
        if self._batch_bytes >= self.cfg.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._writer is None or self._file_bytes >= self.cfg.parquet_file_bytes:
            self._open()
        assert self._writer is not None
        columns = {f.name: [row[f.name] for row in self._batch] for f in self.schema}  # 4x faster than from_pylist
        self._writer.write_table(pa.Table.from_pydict(columns, schema=self.schema), row_group_size=len(self._batch))
        self._file_bytes += self._batch_bytes
        self._rows += len(self._batch)
        self._batch, self._batch_bytes = [], 0
        pa.default_memory_pool().release_unused()  # mimalloc would otherwise keep each row group's pages: RSS creeps

    def _open(self) -> None:
        self._close_file()
        rel = f"{self.prefix}/{self.stem}-{len(self.files):02d}.parquet"
        self._sink = MultipartWriter(self.store, rel, md5=False)
        self._file = pa.PythonFile(self._sink, mode="w")
        plain = [f.name for f in self.schema if f.name not in PIXEL_COLUMNS]  # no stats/dictionary for pixels
        self._writer = pq.ParquetWriter(
            self._file, self.schema, compression="none", write_statistics=plain, use_dictionary=plain
        )
        self._file_bytes = self._rows = 0

    def _close_file(self) -> None:
        if self._writer is None or self._sink is None or self._file is None:
            return
        self._writer.close()
        self.files.append(_entry(self._sink.finish(), self._rows, "parquet"))
        self._file.close()
        self._writer = self._sink = self._file = None

    def close(self) -> None:
        """Write the last row group and complete the last file."""
        self._flush()
        self._close_file()

    def abort(self) -> None:
        """Abort the file being written (completed files stay; a rerun rewrites them)."""
        if self._sink is not None:
            self._sink.abort()


def _entry(done: Uploaded, count: int, kind: str) -> dict[str, Any]:
    entry = {"path": done.rel, "size": done.size, "sha256": done.sha256, "rows": count, "kind": kind}
    return entry | ({"md5": done.md5} if done.md5 is not None else {})


@dataclass
class UnitOutput:
    """What converting one unit wrote: its files, a digest per published image, the quarantine rows of the rest."""

    files: list[dict[str, Any]]
    digests: list[dict[str, Any]]
    quarantine: list[dict[str, str]]


def _write_unit(store: Store, cfg: RunConfig, unit: Unit, rows: UnitRows, release: str) -> UnitOutput:
    """Stream one unit's samples into its tar shard and Parquet file(s); images that cannot be decoded are left
    out and come back as quarantine rows."""
    progress = Progress(f"convert {unit.name}", len(rows), log)
    parts = ParquetParts(store, f"{release}/parquet/split={unit.split}", unit.name, cfg)
    digests: list[dict[str, Any]] = []
    quarantine: list[dict[str, str]] = []
    try:
        with MultipartWriter(store, f"{release}/webdataset/{unit.split}/{unit.name}.tar", md5=True) as tar_sink:
            tar = TarStream(tar_sink)
            for sample in _fetch(store, rows, cfg):
                if isinstance(sample, Rejected):
                    quarantine.append(sample.row)
                    progress.advance()
                    continue
                write_sample(tar, sample)
                parts.add(sample)
                digests.append({k: sample.record[k] for k in ("image_index", "sha256", "converted")})
                progress.advance()
                faults.point("convert.sample")
            tar.close()
            parts.close()
    except BaseException:
        parts.abort()
        raise
    progress.finish()
    assert tar_sink.result is not None
    return UnitOutput([_entry(tar_sink.result, len(digests), "wds"), *parts.files], digests, quarantine)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """A unit result without its per-image parts (what goes through XCom): the quarantine as a count."""
    small = {k: v for k, v in result.items() if k not in ("digests", "quarantine")}
    return small | {"quarantined": len(result.get("quarantine", []))}


def convert_unit(store: Store, cfg: RunConfig, plan: Plan, unit: Unit) -> dict[str, Any]:
    """Convert one unit; return its result (files, published and quarantined counts). Idempotent per run.

    The result kept in the run's workspace also holds the per-image digests and the quarantine rows of the
    images that could not be decoded (``pipeline.publish.finish.finish`` merges them into the release).
    """
    prefix, release = run_prefix(plan.run_id), release_prefix(plan.version)
    done_key = f"{prefix}/units/{unit.name}.json"
    if store.exists(done_key):
        log.info("unit %s already converted in this run: skipped", unit.name)
        return _summary(get_json(store, done_key))
    rows = UnitRows(
        get_table(store, f"{prefix}/plan.parquet", [("split", "==", unit.split), ("unit", "==", unit.index)])
    )
    out = _write_unit(store, cfg, unit, rows, release)
    result = {
        "unit": unit.name,
        "split": unit.split,
        "images": len(out.digests),
        "files": out.files,
        "digests": out.digests,
        "quarantine": out.quarantine,
    }
    put_json(store, done_key, result)
    return _summary(result)
