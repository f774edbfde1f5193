"""Random access: one image's row, with its PNG bytes, by image id, without scanning a split.

:func:`get_image` finds the image's split in the metadata (read once and kept on the release), the Parquet file
and row group that hold it from the manifest (each Parquet entry's ``row_groups``: rows, first and last image id;
rows are sorted by ``image_id``), and reads only that row group's id and pixel columns. A release whose manifest
has no ``row_groups`` (published before they were recorded) is read with a filter on ``image_id`` instead, which
pyarrow answers from the row groups' statistics.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.errors import UsageError, VerifyError

if TYPE_CHECKING:
    from pipeline.read.client import Release

__all__ = ["PIXEL_COLUMNS", "get_image", "locate"]

log = logging.getLogger(__name__)

#: What :func:`get_image` reads from the Parquet part (the rest of the row comes from the metadata).
PIXEL_COLUMNS = ("image", "image_small")
_TELL = "run `cxr verify --release {version}` and tell the data engineers"


def locate(entries: list[dict[str, Any]], image_id: str) -> tuple[dict[str, Any], int] | None:
    """The Parquet entry and row-group index whose ``first``..``last`` range holds ``image_id``.

    Returns None when an entry has no ``row_groups`` (the caller then scans with a filter) or no range holds it.
    """
    if not entries or any("row_groups" not in entry for entry in entries):
        return None
    for entry in entries:
        for index, group in enumerate(entry["row_groups"]):
            if str(group["first"]) <= image_id <= str(group["last"]):
                return entry, index
    return None


def _row_of(release: Release, image_id: str) -> dict[str, Any]:
    """The image's metadata row (from the release's cached metadata).

    Raises:
        UsageError: the release has no such image.
    """
    index: dict[str, int] | None = release.cache.get("row_of_id")
    metadata = release.metadata()
    if index is None:
        index = {str(i): n for n, i in enumerate(metadata.column("image_id").to_pylist())}
        release.cache["row_of_id"] = index
    if image_id not in index:
        raise UsageError(
            f"release {release.version} has no image {image_id!r}: image ids look like 00000001_000 "
            "(release.to_pandas()['image_id'] lists them)"
        )
    row: dict[str, Any] = metadata.slice(index[image_id], 1).to_pylist()[0]
    return row


def _pixels_from_row_group(release: Release, entry: dict[str, Any], group: int, image_id: str) -> pa.Table:
    """The id and pixel columns of one row group of one Parquet part, filtered to ``image_id``."""
    path = release.client.store.uri(release.key(entry["path"])).removeprefix("s3://")
    footers: dict[str, pq.FileMetaData] = release.cache.setdefault("footers", {})
    fs = release.filesystem()
    with fs.open_input_file(path) as source:
        parquet = pq.ParquetFile(source, metadata=footers.get(path))
        footers[path] = parquet.metadata
        table = parquet.read_row_group(group, columns=["image_id", *PIXEL_COLUMNS])
    return table.filter(pc.field("image_id") == image_id)


def _pixels_by_scan(release: Release, split: str, image_id: str) -> pa.Table:
    """The id and pixel columns of ``image_id``, read through the split's Parquet parts with a filter."""
    log.debug("release %s lists no row groups: looking %s up with a filtered scan", release.version, image_id)
    paths = [url.removeprefix("s3://") for url in release.parquet_urls(split)]
    dataset = ds.dataset(paths, filesystem=release.filesystem(), format="parquet")
    return dataset.to_table(columns=["image_id", *PIXEL_COLUMNS], filter=pc.field("image_id") == image_id)


def get_image(release: Release, image_id: str) -> dict[str, Any]:
    """One image's metadata row plus ``image`` (PNG bytes) and ``image_small`` (256 px PNG bytes, or None).

    Raises:
        UsageError: ``image_id`` is not an image of the release (``.png`` may end it).
        VerifyError: the manifest or the Parquet parts do not hold an image the metadata lists.
    """
    if not isinstance(image_id, str):
        raise UsageError(f"an image id is a string such as '00000001_000'; got {type(image_id).__name__}")
    image_id = image_id.removesuffix(".png")
    row = _row_of(release, image_id)
    split = str(row["split"])
    parts = [f for f in release.files("parquet", split) if f["path"].startswith("parquet/")]
    found = locate(parts, image_id)
    if found is not None:
        pixels = _pixels_from_row_group(release, found[0], found[1], image_id)
    elif parts and all("row_groups" in entry for entry in parts):
        raise VerifyError(
            f"release {release.version} lists image {image_id} in its metadata ({split}) but no row group of its "
            f"manifest's Parquet parts; {_TELL.format(version=release.version)}"
        )
    else:
        pixels = _pixels_by_scan(release, split, image_id)
    if pixels.num_rows != 1:
        raise VerifyError(
            f"release {release.version} lists image {image_id} in its metadata ({split}) but its Parquet parts hold "
            f"{pixels.num_rows} rows of it; {_TELL.format(version=release.version)}"
        )
    found_row = pixels.to_pylist()[0]
    return {**row, **{column: found_row[column] for column in PIXEL_COLUMNS}}
