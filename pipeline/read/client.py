"""Read published releases: resolve ``latest`` or a version, then get pyarrow, pandas or WebDataset handles.

    from pipeline.read.client import ReleaseClient

    client = ReleaseClient()                  # store from CXR_STORE, endpoint and keys from AWS_* variables
    release = client.open("latest")           # or client.open("2026.11.26")
    meta = release.to_pandas()                # metadata of every image, no pixels
    train = release.dataset("train")          # pyarrow dataset with the PNG bytes in ``image``
    urls = release.shard_urls("train")        # presigned HTTP URLs of the WebDataset shards
    pa_only = release.select("train", views=["PA"])  # a Selection: every reader takes one where it takes a split
    row = release.get("00000001_000")         # one image's row with its PNG bytes, reading only its row group

Only versions with a ``manifest.json`` are releases: a version still being written (claimed, no manifest)
cannot be opened. Every file a handle reads is one the manifest lists, never a listing of the prefix.
Read-only credentials are enough.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pipeline.config import StoreConfig
from pipeline.errors import PipelineError, ReleaseNotFoundError, UsageError
from pipeline.publish.latest import version_key
from pipeline.publish.listing import list_versions, resolve_version
from pipeline.publish.manifest import read_manifest
from pipeline.read.access import get_image
from pipeline.read.download import download_release, local_path
from pipeline.read.selection import (
    Selection,
    check_filter,
    check_split,
    image_column,
    read_rows,
    resolve,
    select,
    split_of,
)
from pipeline.store import layout
from pipeline.store.storage import Store

#: The consumers' API; ``ReleaseNotFoundError`` (from :mod:`pipeline.errors`) is what ``open`` raises for a non-release.
__all__ = ["Release", "ReleaseClient", "ReleaseNotFoundError", "Selection", "load_httpfs"]

log = logging.getLogger(__name__)

PRESIGN_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Release:
    """One published release: its manifest and handles on its files.

    Every reader takes a split name, None (every split) or a :class:`Selection` (:meth:`select`).
    """

    client: ReleaseClient
    version: str
    manifest: dict[str, Any]
    #: What this process has read of the release already (metadata, Parquet footers); a release never changes.
    cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def files(self, kind: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        """Manifest entries (paths relative to the release), optionally of one kind (``parquet``, ``wds``) and split."""
        entries = self.manifest["files"]
        if kind is not None:
            entries = [f for f in entries if f["kind"] == kind]
        if split is not None:
            check_split(split)
            entries = [f for f in entries if f"split={split}/" in f["path"] or f"webdataset/{split}/" in f["path"]]
        return sorted(entries, key=lambda f: f["path"])

    def key(self, path: str) -> str:
        """Store-relative key of a release-relative path."""
        return layout.release_key(self.version, path)

    def url(self, path: str) -> str:
        """The ``s3://`` URL of a file the manifest lists (``metadata.parquet``, ``annotations/<id>.parquet``...).

        Raises:
            UsageError: the manifest lists no such file.
        """
        if not any(f["path"] == path for f in self.manifest["files"]):
            raise UsageError(f"release {self.version} has no file {path!r}: its manifest lists every file it has")
        return self.client.store.uri(self.key(path))

    def parquet_urls(self, split: str | Selection | None = None) -> list[str]:
        """``s3://`` URLs of the Parquet parts with pixels (one split, or all), for DuckDB, datasets, Spark..."""
        parts = [f for f in self.files("parquet", split_of(split)) if f["path"].startswith("parquet/")]
        return [self.client.store.uri(self.key(f["path"])) for f in parts]

    def filesystem(self) -> pafs.S3FileSystem:
        """The client's pyarrow S3 filesystem, made once for this release so its connections are reused."""
        if "filesystem" not in self.cache:
            self.cache["filesystem"] = self.client.filesystem()
        fs: pafs.S3FileSystem = self.cache["filesystem"]
        return fs

    def dataset(self, split: str | Selection | None = None) -> ds.Dataset:
        """A pyarrow dataset over the Parquet parts (one row per image, PNG bytes in ``image``, the 256 px copy in
        ``image_small``); for a selection, already filtered to its images (``dataset.to_table(columns=...)``)."""
        paths = [url.removeprefix("s3://") for url in self.parquet_urls(split)]
        dataset = ds.dataset(paths, filesystem=self.filesystem(), format="parquet")
        if isinstance(split, Selection) and (expression := self.selection(split).filter_expression()) is not None:
            dataset = dataset.filter(expression)
        return dataset

    def metadata(self) -> pa.Table:
        """``metadata.parquet``: every image's row without pixels, sorted by split then image (read once)."""
        if "metadata" not in self.cache:
            path = self.client.store.uri(self.key("metadata.parquet")).removeprefix("s3://")
            self.cache["metadata"] = ds.dataset(path, filesystem=self.filesystem(), format="parquet").to_table()
        table: pa.Table = self.cache["metadata"]
        return table

    def select(
        self, split: str | None = None, *, views: str | Iterable[str] | None = None,
        findings: str | Iterable[str] | None = None, unique_patients: bool | str = False,
        where: pc.Expression | None = None,
    ) -> Selection:  # fmt: skip
        """Choose images on the metadata (no pixels read): ``views=["PA"]``, ``findings=[...]`` (any of these
        labels), ``unique_patients="first"`` (each patient's first image among those chosen), ``where=`` (a pyarrow
        expression over the metadata). Every reader takes the result. Arguments: :func:`pipeline.read.selection.select`.
        """
        return select(
            self.metadata(), self.manifest, split, views=views, findings=findings, unique_patients=unique_patients,
            where=where,
        )  # fmt: skip

    def selection(self, split: str | Selection | None) -> Selection:
        """A split name, None (every split) or a selection as a :class:`Selection` resolved to image ids."""
        return resolve(self.metadata(), self.manifest, split)

    def table(
        self, split: str | Selection | None = None, columns: list[str] | None = None,
        filter: pc.Expression | None = None, image: str | None = None,
    ) -> pa.Table:  # fmt: skip
        """The rows of a split or selection: from the metadata, or from the Parquet parts when pixels are asked for
        (``image="full"`` adds ``image``, ``image="small"`` adds ``image_small``, or name them in ``columns``).

        Raises:
            UsageError: an unknown split, column or ``image`` value, or a ``filter`` that is no pyarrow expression.
        """
        return read_rows(self, split, columns, check_filter(filter), image)

    def to_pandas(
        self, split: str | Selection | None = None, columns: list[str] | None = None,
        filter: pc.Expression | None = None, image: str | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """:meth:`table` as a DataFrame: the metadata (no pixels), or Parquet rows when pixels are asked for."""
        frame: pd.DataFrame = self.table(split, columns, filter, image).to_pandas()
        return frame

    def get(self, image_id: str) -> dict[str, Any]:
        """One image's metadata row plus ``image`` and ``image_small`` (PNG bytes), reading only its row group (a
        :class:`~pipeline.errors.UsageError` for an id the release does not have)."""
        return get_image(self, image_id)

    def shard_urls(
        self, split: str | Selection | None, how: str = "presigned", expires: int = PRESIGN_SECONDS
    ) -> list[str]:
        """The WebDataset shards of one split (a selection's split; None: every split), in order.

        Each sample has ``<id>.png`` (full), ``<id>.small.png`` (256 px), ``<id>.json`` (the row) and
        ``<id>.labels.npy`` (15 x uint8 in ``label_vector_order``); decode only the member you use. A selection
        keeps its split's shards: filter them with ``keys = selection.keys()`` and
        ``wds.WebDataset(urls).select(lambda s: s["__key__"] in keys)``.

        Args:
            split: ``train``, ``val``, ``test``, a :class:`Selection`, or None.
            how: ``presigned`` (HTTP URLs valid for ``expires`` seconds; webdataset opens them with curl)
                or ``pipe`` (``pipe:`` commands that stream each shard with this client; they never expire).
            expires: Lifetime of presigned URLs in seconds.
        """
        shards = [f for f in self.files("wds", split_of(split)) if f["path"].endswith(".tar")]
        if how == "pipe":
            return [f"pipe:{sys.executable} -m pipeline.read.client cat {self.client.store.uri(self.key(f['path']))}"
                    for f in shards]  # fmt: skip
        if how != "presigned":
            raise UsageError(f"how={how!r}: use 'presigned' or 'pipe'")
        return [self.client.presign(self.key(f["path"]), expires) for f in shards]

    def torch_dataset(
        self, split: str | Selection | None, image: str = "full", labels: str = "nih",
        transform: Callable[[Any], Any] | None = None, *, cache_row_groups: int = 4, decode_threads: int = 2,
    ) -> Any:  # fmt: skip
        """A map-style PyTorch dataset of a split or selection (:class:`pipeline.read.torchdata.ReleaseDataset`):
        items ``{"image_id", "image", "labels"}``; ``image="small"`` reads the 256 px copy."""
        from pipeline.read.torchdata import ReleaseDataset

        image_column(image)
        return ReleaseDataset(
            self, self.selection(split), image=image, labels=labels, transform=transform,
            cache_row_groups=cache_row_groups, decode_threads=decode_threads,
        )  # fmt: skip

    def download(
        self, dest: str | Path, split: str | Selection | None = None, *, only: str | None = None,
        selection: Selection | None = None,
    ) -> Any:  # fmt: skip
        """Copy files under ``dest/<version>/`` with the release's layout, checking each file's SHA-256.

        ``download(dest)`` copies everything the manifest lists (``only``: ``parquet``, ``webdataset``,
        ``metadata`` or ``card``; see :func:`pipeline.read.download.download_release`, whose result it returns).
        ``download(dest, "train")`` or ``download(dest, selection=...)`` copies the Parquet parts of a split (a
        selection's split: read them with ``filter=selection.filter_expression()``) and returns their local paths.
        """
        chosen = selection if selection is not None else split
        if chosen is None:
            return download_release(self, dest, only=only)
        if only not in (None, "parquet"):
            raise UsageError(f"only={only!r} goes with a whole-release download: leave out the split or selection")
        return list(download_release(self, dest, only="parquet", split=split_of(chosen)).files)

    def _local_path(self, dest: Path, path: str) -> Path:
        """``dest/<version>/<path>`` (:func:`pipeline.read.download.local_path`: refuses paths outside it)."""
        return local_path(self.version, dest, path)

    @property
    def layers(self) -> list[str]:
        """The ids of the release's annotation layers (each a struct column of the metadata and the Parquet rows)."""
        return [str(entry["id"]) for entry in self.manifest.get("annotations") or []]

    def layer_info(self, layer_id: str) -> dict[str, Any]:
        """A layer's manifest entry: kind, files (name, SHA-256, rows), fields, images covered, comparison.

        Raises:
            UsageError: the release has no such layer (the message lists the ones it has).
        """
        for entry in self.manifest.get("annotations") or []:
            if entry["id"] == layer_id:
                return dict(entry)
        raise UsageError(
            f"release {self.version} has no annotation layer {layer_id!r}; its layers: "
            f"{', '.join(self.layers) or 'none'}"
        )

    def layer(self, layer_id: str) -> pa.Table:
        """A layer's own table (``annotations/<id>.parquet``): the layer as normalised, each row's file and line."""
        path = self.client.store.uri(self.key(self.layer_info(layer_id)["table"])).removeprefix("s3://")
        return ds.dataset(path, filesystem=self.filesystem(), format="parquet").to_table()

    def evaluation_frame(self, layer_id: str, split: str | None = "test") -> pd.DataFrame:
        """The images a layer covers (of one split, or all): ``image_id``, ``split``, the primary labels (``labels``
        and the boolean columns) and the layer's fields as ``<layer>.<field>`` columns: train on NIH's labels,
        evaluate on the layer's."""
        info = self.layer_info(layer_id)
        frame = self.to_pandas(split)
        frame = frame[frame[layer_id].notna()].reset_index(drop=True)
        for spec in info["fields"]:
            name = spec["name"]
            frame[f"{layer_id}.{name}"] = [value.get(name) for value in frame[layer_id]]
        return frame[[c for c in frame.columns if c not in self.layers]]

    def counts(self) -> dict[str, int]:
        """Images per split, from the manifest."""
        return {str(k): int(v) for k, v in self.manifest["counts"].items()}


class ReleaseClient:
    """Reads the releases of one store (``s3://bucket/prefix``).

    Arguments left out come from the standard environment: ``CXR_STORE``, ``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_DEFAULT_REGION``.
    """

    def __init__(
        self,
        store: str | None = None,
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str | None = None,
    ) -> None:
        config = StoreConfig.from_env(store)
        overrides = {"endpoint_url": endpoint_url, "access_key_id": access_key_id,
                     "secret_access_key": secret_access_key, "region": region}  # fmt: skip
        self.config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        self.store = Store(self.config)

    def versions(self, include_incomplete: bool = False) -> list[str]:
        """Published versions, oldest first (with ``include_incomplete``, also those without a manifest)."""
        listing = list_versions(self.store)
        found = listing.published + (listing.incomplete if include_incomplete else [])
        return sorted(found, key=version_key)

    def resolve(self, version: str = "latest") -> str:
        """The version ``latest`` points at, or ``version`` itself."""
        return resolve_version(self.store, version)

    def open(self, version: str = "latest") -> Release:
        """Open a published release (``latest`` or a version name)."""
        resolved = self.resolve(version)
        manifest = read_manifest(self.store, resolved)
        if manifest is None:
            claimed = self.store.exists(layout.claim_key(resolved))
            state = "is being written (no manifest yet)" if claimed else "does not exist"
            raise ReleaseNotFoundError(
                f"release {resolved} {state} in {self.store.uri('releases/')}; published: "
                f"{', '.join(self.versions()) or 'none'}"
            )
        return Release(self, resolved, manifest)

    def filesystem(self) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem for the store (pyarrow ignores ``AWS_ENDPOINT_URL``: it is passed here)."""
        c = self.config
        return pafs.S3FileSystem(access_key=c.access_key_id, secret_key=c.secret_access_key, region=c.region,
                                 endpoint_override=c.endpoint_url)  # fmt: skip

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options (Hugging Face ``datasets``, pandas ``read_parquet``, dask...)."""
        c = self.config
        options: dict[str, Any] = {"client_kwargs": {"region_name": c.region}}
        if c.access_key_id:
            options.update(key=c.access_key_id, secret=c.secret_access_key)
        if c.endpoint_url:
            options["client_kwargs"]["endpoint_url"] = c.endpoint_url
        return options

    def presign(self, rel: str, expires: int = PRESIGN_SECONDS) -> str:
        """A presigned HTTP GET URL of one store-relative key."""
        params = {"Bucket": self.store.bucket, "Key": self.store.key(rel)}
        url: str = self.store.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
        return url

    def duckdb_secret_sql(self, name: str = "cxr") -> str:
        """``CREATE SECRET`` for DuckDB's httpfs so ``read_parquet('s3://...')`` reaches this store."""
        c = self.config
        parts = ["TYPE s3", f"REGION {_sql(c.region)}"]
        if c.access_key_id:
            parts += [f"KEY_ID {_sql(c.access_key_id)}", f"SECRET {_sql(c.secret_access_key or '')}"]
        if c.endpoint_url:
            endpoint = urlparse(c.endpoint_url)
            use_ssl = "true" if endpoint.scheme == "https" else "false"
            parts += [f"ENDPOINT {_sql(endpoint.netloc)}", "URL_STYLE 'path'", f"USE_SSL {use_ssl}"]
        return f"CREATE OR REPLACE SECRET {name} ({', '.join(parts)})"

    def duckdb_connect(self) -> Any:
        """A DuckDB connection with httpfs loaded (offline from ``duckdb-extension-httpfs``) and this store's secret."""
        import duckdb

        con = duckdb.connect()
        load_httpfs(con)
        con.execute(self.duckdb_secret_sql())
        return con


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_httpfs(con: Any) -> None:
    """Load DuckDB's httpfs: installed already, or from the ``duckdb-extension-httpfs`` package (no download)."""
    try:
        con.execute("LOAD httpfs")
        return
    except Exception as exc:  # duckdb's IOException: not installed in ~/.duckdb; try the packaged copy
        log.debug("LOAD httpfs failed (%s); loading the extension shipped by duckdb-extension-httpfs", exc)
    try:
        import duckdb_extension_httpfs
    except ImportError as exc:
        raise PipelineError(
            "DuckDB's httpfs extension is not installed: pip install duckdb-extension-httpfs "
            "(same version as duckdb), or run INSTALL httpfs where the network allows it"
        ) from exc
    root = Path(duckdb_extension_httpfs.__file__).parent
    found = sorted(root.glob("extensions/*/httpfs.duckdb_extension"))
    if not found:
        raise PipelineError(f"no httpfs.duckdb_extension under {root}: reinstall duckdb-extension-httpfs")
    con.execute(f"LOAD {_sql(str(found[-1]))}")


def _cat(uri: str) -> int:
    """Stream one object to stdout (the ``pipe:`` shard opener)."""
    parsed = urlparse(uri)
    store = Store(StoreConfig.from_env(f"s3://{parsed.netloc}"))
    shutil.copyfileobj(store.open_stream(parsed.path.lstrip("/")), sys.stdout.buffer, 1 << 20)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "cat":
        sys.exit("usage: python -m pipeline.read.client cat s3://BUCKET/KEY")
    sys.exit(_cat(sys.argv[2]))
