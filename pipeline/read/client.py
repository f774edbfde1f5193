"""Read published releases: resolve ``latest`` or a version, then get pyarrow, pandas or WebDataset handles.

    from pipeline.read.client import ReleaseClient

    client = ReleaseClient()                  # store from CXR_STORE, endpoint and keys from AWS_* variables
    release = client.open("latest")           # or client.open("2026.11.26")
    meta = release.to_pandas()                # metadata of every image, no pixels
    train = release.dataset("train")          # pyarrow dataset with the PNG bytes in ``image``
    urls = release.shard_urls("train")        # presigned HTTP URLs of the WebDataset shards

Only versions with a ``manifest.json`` are releases: a version still being written (claimed, no manifest)
cannot be opened. Every file a handle reads is one the manifest lists, never a listing of the prefix.
Read-only credentials are enough.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pipeline.config import StoreConfig
from pipeline.errors import PipelineError, ReleaseNotFoundError, UsageError, VerifyError
from pipeline.plan.split import SPLITS
from pipeline.publish.latest import version_key
from pipeline.publish.listing import list_versions, resolve_version
from pipeline.publish.manifest import read_manifest
from pipeline.store import layout
from pipeline.store.storage import Store

#: The consumers' API; ``ReleaseNotFoundError`` (from :mod:`pipeline.errors`) is what ``open`` raises for a non-release.
__all__ = ["Release", "ReleaseClient", "ReleaseNotFoundError", "load_httpfs"]

log = logging.getLogger(__name__)

PRESIGN_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Release:
    """One published release: its manifest and handles on its files."""

    client: ReleaseClient
    version: str
    manifest: dict[str, Any]

    def files(self, kind: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        """Manifest entries (paths relative to the release), optionally of one kind (``parquet``, ``wds``) and split."""
        entries = self.manifest["files"]
        if kind is not None:
            entries = [f for f in entries if f["kind"] == kind]
        if split is not None:
            _check_split(split)
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

    def parquet_urls(self, split: str | None = None) -> list[str]:
        """``s3://`` URLs of the Parquet parts with pixels (one split, or all), for DuckDB, datasets, Spark..."""
        parts = [f for f in self.files("parquet", split) if f["path"].startswith("parquet/")]
        return [self.client.store.uri(self.key(f["path"])) for f in parts]

    def dataset(self, split: str | None = None) -> ds.Dataset:
        """A pyarrow dataset over the Parquet parts (one row per image, PNG bytes in ``image``)."""
        paths = [url.removeprefix("s3://") for url in self.parquet_urls(split)]
        return ds.dataset(paths, filesystem=self.client.filesystem(), format="parquet")

    def metadata(self) -> pa.Table:
        """``metadata.parquet``: every image's row without pixels, sorted by split then image."""
        path = self.client.store.uri(self.key("metadata.parquet")).removeprefix("s3://")
        return ds.dataset(path, filesystem=self.client.filesystem(), format="parquet").to_table()

    def to_pandas(self, split: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """A DataFrame of the metadata (no pixels), or of the Parquet parts when a pixel column is asked for."""
        if columns is not None and ({"image", "image_small"} & set(columns)):
            table = self.dataset(split).to_table(columns=columns)
        else:
            table = self.metadata()
            if split is not None:
                _check_split(split)
                table = table.filter(ds.field("split") == split)
            table = table.select(columns) if columns else table
        frame: pd.DataFrame = table.to_pandas()
        return frame

    def shard_urls(self, split: str, how: str = "presigned", expires: int = PRESIGN_SECONDS) -> list[str]:
        """The WebDataset shards of one split, in order.

        Args:
            split: ``train``, ``val`` or ``test``.
            how: ``presigned`` (HTTP URLs valid for ``expires`` seconds; webdataset opens them with curl)
                or ``pipe`` (``pipe:`` commands that stream each shard with this client; they never expire).
            expires: Lifetime of presigned URLs in seconds.
        """
        shards = [f for f in self.files("wds", split) if f["path"].endswith(".tar")]
        if how == "pipe":
            return [f"pipe:{sys.executable} -m pipeline.read.client cat {self.client.store.uri(self.key(f['path']))}"
                    for f in shards]  # fmt: skip
        if how != "presigned":
            raise UsageError(f"how={how!r}: use 'presigned' or 'pipe'")
        return [self.client.presign(self.key(f["path"]), expires) for f in shards]

    def download(self, dest: str | Path, split: str | None = None) -> list[Path]:
        """Copy the Parquet parts (one split, or all) under ``dest``, checking each file's SHA-256.

        Files already there with the right checksum are kept. Returns the local paths, in manifest order.
        """
        parts = [f for f in self.files("parquet", split) if f["path"].startswith("parquet/")]
        return [self._fetch(entry, self._local_path(Path(dest), entry["path"])) for entry in parts]

    def _local_path(self, dest: Path, path: str) -> Path:
        """``dest/<version>/<path>``, refusing a manifest path that would lead outside it (``..``, absolute)."""
        parts = path.split("/")
        if path.startswith("/") or "\\" in path or any(part in ("", ".", "..") for part in parts):
            raise VerifyError(
                f"release {self.version}'s manifest lists {path!r}, which is not a plain relative path; nothing was "
                f"written for it: run `cxr verify --release {self.version}` and tell the data engineers"
            )
        return dest / self.version / Path(*parts)

    def _fetch(self, entry: dict[str, Any], target: Path) -> Path:
        if target.is_file() and _sha256_file(target) == entry["sha256"]:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            stream = self.client.store.open_stream(self.key(entry["path"]))
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != entry["sha256"]:
            partial.unlink()
            raise VerifyError(
                f"{self.key(entry['path'])} does not match the manifest of release {self.version}; "
                f"run `cxr verify --release {self.version}` and tell the data engineers"
            )
        partial.replace(target)
        return target

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
        return ds.dataset(path, filesystem=self.client.filesystem(), format="parquet").to_table()

    def evaluation_frame(self, layer_id: str, split: str | None = "test") -> pd.DataFrame:
        """The images a layer covers (of one split, or all): ``image_id``, ``split``, the primary labels (``labels``
        and the boolean columns) and the layer's fields as ``<layer>.<field>`` columns: train on NIH's labels,
        evaluate on the layer's."""
        info = self.layer_info(layer_id)
        frame = self.to_pandas(split)
        frame = frame[frame[layer_id].notna()].reset_index(drop=True)
        for field in info["fields"]:
            name = field["name"]
            frame[f"{layer_id}.{name}"] = [value.get(name) for value in frame[layer_id]]
        return frame[[c for c in frame.columns if c not in self.layers]]

    def counts(self) -> dict[str, int]:
        """Images per split, from the manifest."""
        return {str(k): int(v) for k, v in self.manifest["counts"].items()}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(SPLITS)}")


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
        overrides = {
            "endpoint_url": endpoint_url,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
            "region": region,
        }
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
            state = (
                "is being written (no manifest yet)"
                if self.store.exists(layout.claim_key(resolved))
                else "does not exist"
            )
            raise ReleaseNotFoundError(
                f"release {resolved} {state} in {self.store.uri('releases/')}; published: "
                f"{', '.join(self.versions()) or 'none'}"
            )
        return Release(self, resolved, manifest)

    def filesystem(self) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem for the store (pyarrow ignores ``AWS_ENDPOINT_URL``: it is passed here)."""
        c = self.config
        return pafs.S3FileSystem(
            access_key=c.access_key_id,
            secret_key=c.secret_access_key,
            region=c.region,
            endpoint_override=c.endpoint_url,
        )

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
