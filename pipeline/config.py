"""Every setting the pipeline reads, in one place, as frozen typed objects; the names a user gives, checked.

The run options (their defaults, ranges and help) are declared in :mod:`pipeline.options`; :class:`RunConfig`
takes its defaults and range checks from there.

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
- ``CXR_DEADLINE_MINUTES``, ``CXR_DEADLINE_FILE``, ``CXR_DEADLINE_NOTIFIER``, ``CXR_DEADLINE_NOTIFIER_KWARGS``:
  the release DAG's deadline alert (read by :mod:`pipeline.run.alerts`; docs/operations.md, Deadline alerts).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field, replace

from pipeline import options
from pipeline.errors import InvalidNameError, UsageError
from pipeline.options import RESERVED_VERSION_SUFFIX, RESERVED_VERSIONS, VERSION_RE, SplitMode

#: ``RunConfig`` field -> its default, from the options table.
_DEFAULTS = options.config_defaults()

#: Top-level folders of a store's layout and what they hold; a store prefix may not pass through one (it would
#: sit inside a published release, the raw zone or a run's workspace of the store above it).
STORE_LAYOUT_DIRS: dict[str, str] = {"releases": "published releases", "raw": "the raw zone", "runs": "run workspaces"}
#: S3 bucket naming rules (general purpose buckets): 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
_BUCKET_IP_RE = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", re.ASCII)
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
DEFAULT_STORE_CONN_ID = "cxr_store"


def check_version(version: str) -> str:
    """Return ``version`` when it can name a release; raise :class:`InvalidNameError` saying why not.

    Refused: anything :data:`VERSION_RE` does not match whole (``v1\\n``, ``../v1``, ``a/b``, non-ASCII), and the
    reserved names ``latest`` and ``*.json`` (in any case), which the store's layout already uses.
    """
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise InvalidNameError(
            f"release version {version!r} must match {VERSION_RE.pattern} whole: 1-64 ASCII letters, digits, '.', "
            "'_' or '-', starting with a letter or digit (no '/', no whitespace)"
        )
    lowered = version.lower()
    if lowered in RESERVED_VERSIONS or lowered.endswith(RESERVED_VERSION_SUFFIX):
        raise InvalidNameError(
            f"release version {version!r} is reserved (the store keeps releases/latest.json, and 'latest' names "
            "the newest release in every command): choose another version, e.g. v1 or 2026.11.26"
        )
    return version


def check_version_arg(version: str) -> str:
    """Return a version a user asks for (``latest`` or a release name); raise :class:`InvalidNameError` otherwise."""
    return version if version == "latest" else check_version(version)


def _bucket_problem(bucket: str) -> str | None:
    if not _BUCKET_RE.fullmatch(bucket):
        return "use 3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit"
    if ".." in bucket:
        return "two dots in a row are not allowed"
    if _BUCKET_IP_RE.fullmatch(bucket):
        return "a bucket name may not look like an IP address"
    if bucket.startswith(_BUCKET_RESERVED_PREFIXES) or bucket.endswith(_BUCKET_RESERVED_SUFFIXES):
        return "the name uses a prefix or suffix S3 reserves"
    return None


def _path_problem(path: str) -> str | None:
    if any(c in path for c in "?#\r\n\0"):
        return "a '?', '#' or control character"
    segments = path.split("/") if path else []
    if "" in segments:
        return "an empty segment ('//')"
    dots = [s for s in segments if s in (".", "..")]
    return f"a {dots[0]!r} segment" if dots else None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key/or/prefix`` into a valid bucket name and a clean key (no slash at either end).

    Refused with :class:`InvalidNameError`: another scheme, a bucket name S3's naming rules refuse, and a
    path with an empty segment (``p//q``: S3-compatible stores such as SeaweedFS fold it to ``p/q``, so the
    keys written and the keys listed would differ), a ``.`` or ``..`` segment, or a ``?``, ``#`` or control
    character. One trailing ``/`` is fine (``s3://bucket/prefix/``).
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InvalidNameError(f"{uri!r} is not an s3://BUCKET[/PREFIX] URI")
    bucket, _, path = uri.removeprefix("s3://").partition("/")
    problem = _bucket_problem(bucket)
    if problem:
        raise InvalidNameError(f"{uri!r}: {bucket!r} is not a valid S3 bucket name ({problem})")
    path = path.removesuffix("/")
    problem = _path_problem(path)
    if problem:
        raise InvalidNameError(f"{uri!r} has {problem} in its path: write the location without it")
    return bucket, path


def split_store_uri(uri: str) -> tuple[str, str]:
    """Split a *store* URI into bucket and prefix: :func:`split_s3_uri`, and the prefix may not lie inside a
    store's layout (no segment named ``releases``, ``raw`` or ``runs``): a store there would write into the
    published releases, raw zone or run workspaces of the store above it (and a release would gain files).
    """
    bucket, prefix = split_s3_uri(uri)
    inside = [s for s in prefix.split("/") if s in STORE_LAYOUT_DIRS]
    if inside:
        raise InvalidNameError(
            f"store {uri!r} lies inside a store's layout ('{inside[0]}/' holds {STORE_LAYOUT_DIRS[inside[0]]}): "
            f"a store prefix may not have a segment named {', '.join(STORE_LAYOUT_DIRS)}; choose another prefix"
        )
    return bucket, prefix


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

    def __post_init__(self) -> None:
        split_store_uri(self.uri)

    @classmethod
    def from_env(cls, uri: str | None = None) -> StoreConfig:
        """Build the store settings from the standard AWS environment variables."""
        resolved = uri or os.environ.get("CXR_STORE")
        if not resolved:
            raise UsageError("no store given: pass --store s3://BUCKET[/PREFIX] (param 'store') or set CXR_STORE")
        return cls(
            uri=resolved,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            region=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        )


def source_store_config(uri: str) -> StoreConfig:
    """How to reach an ``s3://`` source: the store's ``AWS_*`` settings, ``CXR_SOURCE_ENDPOINT_URL`` first.

    Only the source's bucket goes into the settings: a source may live anywhere in it (also under a folder named
    ``raw``), so the store-layout rules of :func:`split_store_uri` do not apply.
    """
    bucket, _ = split_s3_uri(uri)
    base = StoreConfig.from_env(f"s3://{bucket}")
    return replace(base, endpoint_url=os.environ.get("CXR_SOURCE_ENDPOINT_URL") or base.endpoint_url)


@dataclass(frozen=True)
class RunConfig:
    """One pipeline run: what to read, where to publish, and how to split.

    The fields that run options set take their defaults and ranges from :data:`pipeline.options.OPTIONS`.
    """

    source: str
    store: StoreConfig
    release: str | None = _DEFAULTS["release"]
    logical_date: str | None = None
    split_mode: SplitMode = _DEFAULTS["split_mode"]
    seed: int = _DEFAULTS["seed"]
    val_fraction: float = _DEFAULTS["val_fraction"]
    test_fraction: float = _DEFAULTS["test_fraction"]
    shards: tuple[str, ...] | None = _DEFAULTS["shards"]
    force: bool = _DEFAULTS["force"]
    dry_run: bool = _DEFAULTS["dry_run"]  # discover, extract, curate and plan; claim and publish nothing
    review: bool = _DEFAULTS["review"]  # stage the release; publish it only once a reviewer approves
    data_entry: str | None = _DEFAULTS["data_entry"]  # which metadata file when several (default: the v2020 one)
    checksums: str | None = _DEFAULTS["checksums"]  # md5 list (path, URI or a file name in the source)
    annotations: tuple[str, ...] | None = _DEFAULTS["annotations"]  # annotation layers, each ID=LOCATION
    run_id: str = field(default_factory=lambda: "manual-" + uuid.uuid4().hex[:12])
    # Not run options: the DAG fills them from its task context (pipeline.provenance.from_airflow_context).
    bundle_name: str | None = None  # the Airflow DAG bundle the DAG was loaded from; None outside Airflow
    bundle_version: str | None = None  # that bundle's version (a git bundle's commit); None when it has none
    upload_workers: int = field(default_factory=lambda: int(os.environ.get("CXR_UPLOAD_WORKERS", "16")))
    shard_target_bytes: int = _DEFAULTS["shard_target_bytes"]
    min_shards: int = _DEFAULTS["min_shards"]  # units (tars, Parquet parts) per split at least, images permitting
    parquet_file_bytes: int = 256 << 20
    row_group_bytes: int = 32 << 20
    variant_size: int | None = _DEFAULTS["variant_size"]

    def __post_init__(self) -> None:
        if self.release is not None:
            check_version(self.release)
        for option in options.config_options():
            option.check_field(getattr(self, option.config_field))

    def with_run_id(self, run_id: str) -> RunConfig:
        """Return a copy bound to another run id (Airflow passes its own)."""
        return replace(self, run_id=run_id)
