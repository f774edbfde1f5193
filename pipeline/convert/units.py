"""Convert stage: one unit of a split into a WebDataset tar shard and Parquet file(s).

Writes, under ``releases/<version>/``::

    webdataset/<split>/<split>-NNNNNN.tar          <image_id>.png, .json, .labels.npy per sample
    parquet/split=<split>/<split>-NNNNNN-KK.parquet  one row per image, PNG bytes in ``image``

Images keep their original bytes when they are 8-bit grayscale; others are converted once. Every image is
proven decodable first (:func:`pipeline.convert.pixels.process_image`, run by :mod:`pipeline.convert.pool`); one
that is not is left out of the unit and quarantined with its reason, shard and member (``undecodable_image``),
and the rest of the unit is published. Output is byte-reproducible: sorted order, fixed tar mtime/owner,
deterministic Parquet (rows as :mod:`pipeline.convert.schema` defines them).
Rows go in ``image_id`` order, and each Parquet file's entry lists its row groups (rows, first and last image
id). Unit results (files with size, sha256, rows; md5 for tar shards; row groups for Parquet files; the bytes of
the full and small images; per-image digests; the quarantine rows of images that could not be decoded) go to
``runs/<run>/units/<unit>.json``.
"""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import faults
from pipeline.config import RunConfig
from pipeline.convert.pool import Rejected, Sample, UnitRows, fetch_samples
from pipeline.convert.schema import FINDING_COLUMNS, PIXEL_COLUMNS, release_schema
from pipeline.convert.tarstream import TarStream
from pipeline.errors import PipelineError
from pipeline.layers.schema import Layer
from pipeline.plan.planning import UNIT_KEY, Plan, Unit
from pipeline.plan.split import SPLITS
from pipeline.progress import Progress
from pipeline.store import layout
from pipeline.store.layout import release_prefix
from pipeline.store.multipart import UPLOAD_CRC32, MultipartWriter, Uploaded
from pipeline.store.storage import Store
from pipeline.store.tables import get_json, get_matching, put_json

log = logging.getLogger(__name__)


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
    to the store while it is written (a multipart upload).

    Rows must come in ``image_id`` order (refused otherwise): each file's entry lists its row groups as
    ``{"rows", "first", "last"}`` (image ids), an index a reader finds an image's row group by. ``image_bytes``
    counts the bytes of ``image`` and ``image_small`` written.
    """

    def __init__(self, store: Store, prefix: str, stem: str, cfg: RunConfig, layers: tuple[Layer, ...] = ()) -> None:
        self.store, self.prefix, self.stem, self.cfg = store, prefix, stem, cfg
        self.schema = release_schema(layers)
        self.files: list[dict[str, Any]] = []
        self.image_bytes = {"full": 0, "small": 0}
        self._batch: list[dict[str, Any]] = []
        self._groups: list[dict[str, Any]] = []
        self._last_id: str | None = None
        self._batch_bytes = self._file_bytes = self._rows = 0
        self._sink: MultipartWriter | None = None
        self._file: pa.PythonFile | None = None
        self._writer: pq.ParquetWriter | None = None

    def add(self, sample: Sample) -> None:
        """Queue one row; a full row group is written out.

        Raises:
            PipelineError: the row's ``image_id`` does not come after the previous row's.
        """
        image_id = str(sample.record["image_id"])
        if self._last_id is not None and image_id <= self._last_id:
            raise PipelineError(f"{self.stem}: image {image_id} comes after {self._last_id}; rows must be sorted")
        self._last_id = image_id
        self._batch.append({**sample.record, "image": sample.png, "image_small": sample.small})
        self.image_bytes["full"] += len(sample.png)
        self.image_bytes["small"] += len(sample.small or b"")
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
        first, last = self._batch[0]["image_id"], self._batch[-1]["image_id"]
        self._groups.append({"rows": len(self._batch), "first": first, "last": last})
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
        self._groups = []

    def _close_file(self) -> None:
        if self._writer is None or self._sink is None or self._file is None:
            return
        self._writer.close()
        self.files.append(_entry(self._sink.finish(), self._rows, "parquet") | {"row_groups": self._groups})
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
    """A written file's entry: path, size, sha256, rows, kind (md5 when computed, and the composite CRC32 the
    store holds for a multipart object, which publishing checks it by; the manifest leaves that one out)."""
    entry = {"path": done.rel, "size": done.size, "sha256": done.sha256, "rows": count, "kind": kind}
    entry |= {"md5": done.md5} if done.md5 is not None else {}
    return entry | ({UPLOAD_CRC32: done.crc32} if done.crc32 is not None else {})


@dataclass
class UnitOutput:
    """What converting one unit wrote: its files, a digest per published image, the quarantine rows of the rest,
    and the bytes of the published images (``{"full": n, "small": n}``)."""

    files: list[dict[str, Any]]
    digests: list[dict[str, Any]]
    quarantine: list[dict[str, str]]
    image_bytes: dict[str, int]


def _write_unit(store: Store, cfg: RunConfig, unit: Unit, rows: UnitRows, release: str) -> UnitOutput:
    """Stream one unit's samples into its tar shard and Parquet file(s); images that cannot be decoded are left
    out and come back as quarantine rows."""
    progress = Progress(f"convert {unit.name}", len(rows), log)
    parts = ParquetParts(store, f"{release}/parquet/split={unit.split}", unit.name, cfg, rows.layers)
    digests: list[dict[str, Any]] = []
    quarantine: list[dict[str, str]] = []
    try:
        with MultipartWriter(store, f"{release}/webdataset/{unit.split}/{unit.name}.tar", md5=True) as tar_sink:
            tar = TarStream(tar_sink)
            for sample in fetch_samples(store, rows, cfg):
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
            _finish_together(parts, tar_sink)
    except BaseException:
        parts.abort()
        raise
    progress.finish()
    assert tar_sink.result is not None
    files = [_entry(tar_sink.result, len(digests), "wds"), *parts.files]
    return UnitOutput(files, digests, quarantine, dict(parts.image_bytes))


def _finish_together(parts: ParquetParts, tar_sink: MultipartWriter) -> None:
    """Complete the unit's last Parquet file and its tar shard at the same time, so that their last uploads overlap
    (one upload at a time left a core idle at the end of every unit); the tar's error comes first when both fail."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-close") as closer:
        closing = closer.submit(parts.close)
        try:
            tar_sink.finish()
        except BaseException:
            closing.exception()  # let it end before the unit is aborted
            raise
        closing.result()


def _by_image_id(table: pa.Table) -> pa.Table:
    """The plan rows in ``image_id`` order (``image_index`` without ``.png``), the order of the row-group index."""
    ids = pc.replace_substring_regex(table["image_index"], pattern=r"\.png$", replacement="")
    return table.take(pc.sort_indices(ids))


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """A unit result without its per-image parts (what goes through XCom): the quarantine as a count."""
    small = {k: v for k, v in result.items() if k not in ("digests", "quarantine")}
    return small | {"quarantined": len(result.get("quarantine", []))}


def convert_unit(store: Store, cfg: RunConfig, plan: Plan, unit: Unit) -> dict[str, Any]:
    """Convert one unit; return its result (files, published and quarantined counts). Idempotent per run.

    The result kept in the run's workspace also holds the per-image digests and the quarantine rows of the
    images that could not be decoded (``pipeline.publish.finish.finish`` merges them into the release).
    """
    release = release_prefix(plan.version)
    done_key = layout.unit_key(plan.run_id, unit.name)
    if store.exists(done_key):
        log.info("unit %s already converted in this run: skipped", unit.name)
        return _summary(get_json(store, done_key))
    where = dict(zip(UNIT_KEY, (unit.split, unit.index), strict=True))
    table = get_matching(store, layout.plan_table_key(plan.run_id), where)  # this unit's row group only
    rows = UnitRows(_by_image_id(table), plan.annotation_layers())
    out = _write_unit(store, cfg, unit, rows, release)
    result = {
        "unit": unit.name,
        "split": unit.split,
        "images": len(out.digests),
        "image_bytes": out.image_bytes,
        "files": out.files,
        "digests": out.digests,
        "quarantine": out.quarantine,
    }
    put_json(store, done_key, result)
    return _summary(result)


#: A unit result's per-image ``digests`` as a table (the images its files hold, with their SHA-256).
DIGEST_SCHEMA = pa.schema([("image_index", pa.string()), ("sha256", pa.string()), ("converted", pa.bool_())])


def digest_table(digests: list[dict[str, Any]]) -> pa.Table:
    """A unit result's ``digests`` (or several units' together) as one Arrow table."""
    return pa.Table.from_pylist(digests, schema=DIGEST_SCHEMA)


def image_bytes(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Bytes of the published full (``image``) and small (``image_small``) PNGs per split, from the unit results."""
    total = {split: {"full": 0, "small": 0} for split in SPLITS}
    for result in results:
        for copy, size in result.get("image_bytes", {}).items():
            total[str(result["split"])][copy] += int(size)
    return total
