"""JSON and Parquet objects in the store: write and read them whole (small files: plans, manifests, tables), or read
a few row groups or columns of a large Parquet object by ranged GETs (:class:`ObjectFile`, :func:`open_parquet`,
:func:`get_matching`, :func:`iter_row_groups`)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import StoreNotFoundError
from pipeline.store.storage import Store


def put_json(store: Store, rel: str, data: Any, *, if_absent: bool = False, if_match: str | None = None) -> str:
    """Write pretty, key-sorted JSON (conditions as :meth:`Store.put_bytes`); return its sha256."""
    body = (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()
    return store.put_bytes(rel, body, if_absent=if_absent, if_match=if_match, content_type="application/json")


def get_json(store: Store, rel: str) -> Any:
    """Read a JSON object."""
    return json.loads(store.get_bytes(rel))


def table_bytes(table: pa.Table) -> bytes:
    """Serialise a table as Parquet (zstd) in memory."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def put_frame(store: Store, rel: str, frame: pd.DataFrame, schema: pa.Schema | None = None) -> str:
    """Write a DataFrame as Parquet; return its sha256."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return store.put_bytes(rel, table_bytes(table))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a frame as plain dicts keyed by column name."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def parquet_table(body: bytes, **options: Any) -> pa.Table:
    """Read Parquet bytes (``options`` as for ``pq.read_table``) on this thread.

    pyarrow's thread pool, used for a read from a Python file object, may abort or hang the interpreter at
    exit (apache/arrow#34314, #50482: ``terminate called without an active exception``, seen here once in
    ``cxr releases diff``); the files read this way are small, so threads buy nothing.
    """
    return pq.read_table(io.BytesIO(body), use_threads=False, **options)


def get_table(store: Store, rel: str, filters: list[tuple[str, str, Any]] | None = None) -> pa.Table:
    """Read a Parquet object into an Arrow table; with ``filters`` (pyarrow's), only the matching rows."""
    return parquet_table(store.get_bytes(rel), filters=filters)


def get_frame(store: Store, rel: str) -> pd.DataFrame:
    """Read a Parquet object into a DataFrame."""
    frame: pd.DataFrame = get_table(store, rel).to_pandas()
    return frame


def put_grouped(store: Store, rel: str, table: pa.Table, by: list[str]) -> str:
    """Write a table as Parquet (zstd) with one row group per value of the ``by`` columns (rows sorted by them), so
    that :func:`get_matching` reads one group's rows alone; return its sha256."""
    table = table.sort_by([(column, "ascending") for column in by])
    changed = np.zeros(max(0, table.num_rows - 1), dtype=bool)
    for column in by:
        values = table[column].combine_chunks()
        changed |= pc.fill_null(pc.not_equal(values[1:], values[:-1]), True).to_numpy(zero_copy_only=False)
    cuts = (np.flatnonzero(changed) + 1).tolist()
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, table.schema, compression="zstd") as writer:
        for start, end in zip([0, *cuts], [*cuts, table.num_rows], strict=True):
            writer.write_table(table.slice(start, end - start), row_group_size=max(1, end - start))
    return store.put_bytes(rel, buf.getvalue())


class ObjectFile(io.RawIOBase):
    """A seekable, read-only view of one stored object: each read is a ranged GET, except reads inside the span
    last fetched by :meth:`fetch` (one GET for a whole row group instead of one per column chunk)."""

    def __init__(self, store: Store, rel: str, size: int) -> None:
        super().__init__()
        self.store, self.rel, self.size = store, rel, size
        self._pos, self._span_start, self._span = 0, 0, b""
        self.gets = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def fetch(self, start: int, length: int) -> None:
        """Fetch ``length`` bytes from ``start`` in one GET and serve the reads that fall inside them."""
        self._span_start, self._span = start, self._get(start, length)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        offset = self._pos - self._span_start
        inside = offset >= 0 and offset + n <= len(self._span)
        data = self._span[offset : offset + n] if inside else self._get(self._pos, n)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _get(self, start: int, length: int) -> bytes:
        self.gets += 1
        return self.store.get_range(self.rel, start, length)


def open_parquet(store: Store, rel: str, size: int | None = None) -> tuple[pq.ParquetFile, ObjectFile]:
    """Open a Parquet object by ranged reads: its footer now, the column chunks read later, nothing else.

    Raises:
        StoreNotFoundError: the object does not exist.
    """
    if size is None:
        info = store.head(rel)
        if info is None:
            raise StoreNotFoundError(f"{store.uri(rel)} does not exist")
        size = info.size
    source = ObjectFile(store, rel, size)
    return pq.ParquetFile(source), source


def _may_hold(metadata: pq.FileMetaData, group: int, where: Mapping[str, Any]) -> bool:
    """Whether row group ``group``'s statistics allow every ``column == value`` of ``where`` (True without them)."""
    row_group = metadata.row_group(group)
    names = [row_group.column(k).path_in_schema for k in range(row_group.num_columns)]
    for column, value in where.items():
        stats = row_group.column(names.index(column)).statistics
        if stats is not None and stats.has_min_max and not stats.min <= value <= stats.max:
            return False
    return True


def _group_span(metadata: pq.FileMetaData, group: int, columns: Sequence[str] | None = None) -> tuple[int, int]:
    """The byte range (start, length) of one row group's column chunks (of ``columns`` only, when given)."""
    row_group = metadata.row_group(group)
    chunks = [row_group.column(k) for k in range(row_group.num_columns)]
    if columns is not None:
        chunks = [c for c in chunks if c.path_in_schema.split(".", 1)[0] in columns]
    starts = [min(c.data_page_offset, c.dictionary_page_offset or c.data_page_offset) for c in chunks]
    end = max(start + c.total_compressed_size for start, c in zip(starts, chunks, strict=True))
    return min(starts), end - min(starts)


def get_matching(store: Store, rel: str, where: Mapping[str, Any]) -> pa.Table:
    """The rows of a Parquet object whose columns equal ``where``'s values, read from only the row groups whose
    statistics can hold them (one GET each), as :func:`put_grouped` writes them; the whole schema when none match."""
    parquet, source = open_parquet(store, rel)
    parts = []
    for group in range(parquet.metadata.num_row_groups):
        if _may_hold(parquet.metadata, group, where):
            source.fetch(*_group_span(parquet.metadata, group))
            parts.append(parquet.read_row_group(group, use_threads=False))
    table = pa.concat_tables(parts) if parts else parquet.schema_arrow.empty_table()
    for column, value in where.items():
        table = table.filter(pc.equal(table[column], value))
    return table


def iter_row_groups(store: Store, rel: str, columns: Sequence[str], size: int | None = None) -> Iterator[pa.Table]:
    """Each row group of a Parquet object, with ``columns`` only: one ranged GET per row group for their chunks
    (columns stored side by side, such as a release file's metadata columns, come in one span without the
    pixels)."""
    parquet, source = open_parquet(store, rel, size)
    for group in range(parquet.metadata.num_row_groups):
        source.fetch(*_group_span(parquet.metadata, group, columns))
        yield parquet.read_row_group(group, columns=list(columns), use_threads=False)
