"""JSON and Parquet objects in the store: write and read them whole (small files: plans, manifests, tables)."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
