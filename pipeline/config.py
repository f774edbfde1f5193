"""Every setting the pipeline reads, in one place, as frozen typed objects.

Environment variables (all optional; command-line options and DAG params override them):

- ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``:
  the object store, as every AWS tool reads them.
- ``CXR_STORE``: default store URI (``s3://bucket/prefix``).
- ``CXR_SOURCE``: default source location (a directory, ``s3://bucket/prefix`` or ``http(s)://`` base URL).
- ``CXR_SOURCE_ENDPOINT_URL``: endpoint of an ``s3://`` source when it is not the store's endpoint
  (its keys are the same ``AWS_*`` variables).
- ``CXR_UPLOAD_WORKERS``: concurrent uploads per task (default 16).
- ``CXR_STORE_CONN_ID``: id of the Airflow connection (AWS type, ``endpoint_url`` in its extra) that holds
  the store's endpoint and keys in a deployment (default ``cxr_store``); DAG tasks look it up at run time
  and fall back to the ``AWS_*`` variables when it does not exist.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Literal

SplitMode = Literal["auto", "official", "patient-hash"]
SPLIT_MODES: tuple[str, ...] = ("auto", "official", "patient-hash")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
DEFAULT_STORE_CONN_ID = "cxr_store"


def store_conn_id(explicit: str | None = None) -> str:
    """The Airflow connection id of the store: ``explicit``, else ``$CXR_STORE_CONN_ID``, else ``cxr_store``."""
    return explicit or os.environ.get("CXR_STORE_CONN_ID") or DEFAULT_STORE_CONN_ID


@dataclass(frozen=True)
class StoreConfig:
    """Where the store is and how to reach it. The secret never appears in ``repr``."""

    uri: str
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, uri: str | None = None) -> StoreConfig:
        """Build the store settings from the standard AWS environment variables."""
        resolved = uri or os.environ.get("CXR_STORE")
        if not resolved:
            raise ValueError("no store given: pass --store s3://BUCKET[/PREFIX] or set CXR_STORE")
        return cls(
            uri=resolved,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            region=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        )


def source_store_config(uri: str) -> StoreConfig:
    """How to reach an ``s3://`` source: the store's ``AWS_*`` settings, ``CXR_SOURCE_ENDPOINT_URL`` first."""
    base = StoreConfig.from_env(uri)
    return replace(base, endpoint_url=os.environ.get("CXR_SOURCE_ENDPOINT_URL") or base.endpoint_url)


@dataclass(frozen=True)
class RunConfig:
    """One pipeline run: what to read, where to publish, and how to split."""

    source: str
    store: StoreConfig
    release: str | None = None
    logical_date: str | None = None
    split_mode: SplitMode = "auto"
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    shards: tuple[str, ...] | None = None
    force: bool = False
    dry_run: bool = False  # discover, extract, curate and plan; claim and publish nothing
    data_entry: str | None = None  # which metadata file when several are present (default: the v2020 one)
    checksums: str | None = None  # md5 list (path, URI or a file name in the source); default: auto-detected
    run_id: str = field(default_factory=lambda: "manual-" + uuid.uuid4().hex[:12])
    upload_workers: int = field(default_factory=lambda: int(os.environ.get("CXR_UPLOAD_WORKERS", "16")))
    shard_target_bytes: int = 1 << 30
    parquet_file_bytes: int = 256 << 20
    row_group_bytes: int = 32 << 20
    variant_size: int | None = 256

    def __post_init__(self) -> None:
        if self.release is not None and not VERSION_RE.match(self.release):
            raise ValueError(f"release version {self.release!r} must match {VERSION_RE.pattern}")
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"split mode {self.split_mode!r} is not one of {', '.join(SPLIT_MODES)}")
        if self.variant_size is not None and not 16 <= self.variant_size <= 1024:
            raise ValueError(f"variant size {self.variant_size} must lie in 16..1024 px (or be off)")
        if not 1 << 20 <= self.shard_target_bytes <= 64 << 30:
            raise ValueError(f"shard size {self.shard_target_bytes >> 20} MB must lie in 1..65536 MB")
        if not 0 <= self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise ValueError("val and test fractions must lie in [0, 1)")

    def with_run_id(self, run_id: str) -> RunConfig:
        """Return a copy bound to another run id (Airflow passes its own)."""
        return replace(self, run_id=run_id)
