"""Find the dataset's files in a source location and open them as streams.

A source is a directory holding NIH's files as they are downloaded: the 12 image archives
(``images_001.zip`` .. or ``images_01.tar.gz`` ..), the metadata CSV (``Data_Entry_2017_v2020.csv``
preferred over ``Data_Entry_2017.csv`` unless the run asks otherwise), and optionally
``BBox_List_2017.csv``, ``train_val_list.txt`` and ``test_list.txt``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from pipeline import nih
from pipeline.errors import SourceNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileRef:
    """One source file: its name, where it is, and a cheap fingerprint (size and mtime)."""

    name: str
    location: str
    size: int
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (for XCom and manifests)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRef:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


@dataclass(frozen=True)
class SourceListing:
    """The dataset files found in a source."""

    source: str
    shards: tuple[FileRef, ...]
    data_entry: FileRef
    bbox: FileRef | None
    train_val: FileRef | None
    test: FileRef | None

    def metadata_files(self) -> tuple[FileRef, ...]:
        """The CSV and list files, without the archives."""
        return tuple(f for f in (self.data_entry, self.bbox, self.train_val, self.test) if f is not None)


def _ref(path: Path) -> FileRef:
    stat = path.stat()
    return FileRef(path.name, str(path.resolve()), stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}")


def _find_shards(root: Path, only: tuple[str, ...] | None) -> tuple[FileRef, ...]:
    found = sorted(
        (p for p in root.iterdir() if p.is_file() and nih.shard_number(p.name) is not None),
        key=lambda p: (nih.shard_number(p.name), p.name),
    )
    if only is not None:
        wanted = set(only)
        found = [p for p in found if p.name in wanted or str(nih.shard_number(p.name)) in wanted]
        missing = wanted - {p.name for p in found} - {str(nih.shard_number(p.name)) for p in found}
        if missing:
            raise SourceNotFoundError(f"shards {sorted(missing)} asked for but not found in {root}")
    return tuple(_ref(p) for p in found)


def _optional(root: Path, name: str) -> FileRef | None:
    path = root / name
    return _ref(path) if path.is_file() else None


def _data_entry(root: Path, prefer: str | None) -> FileRef:
    names = [prefer] if prefer else [nih.DATA_ENTRY_V2020, nih.DATA_ENTRY_2017]
    for name in names:
        ref = _optional(root, name)
        if ref is not None:
            return ref
    raise SourceNotFoundError(
        f"metadata file {' or '.join(names)} not found in {root}; download it from the NIH dataset "
        "page and place it beside the image archives"
    )


def discover(source: str, shards: tuple[str, ...] | None = None, data_entry: str | None = None) -> SourceListing:
    """List the dataset files in a source directory.

    Args:
        source: a local directory.
        shards: restrict to these archive names or numbers (``"3"`` or ``"images_003.zip"``).
        data_entry: the metadata file name to use when both label versions are present.

    Raises:
        SourceNotFoundError: the directory, the metadata CSV, or every archive is missing.
    """
    root = Path(source)
    if not root.is_dir():
        raise SourceNotFoundError(f"source directory {source} does not exist")
    found = _find_shards(root, shards)
    if not found:
        raise SourceNotFoundError(
            f"no image archives (images_001.zip .. images_012.zip or images_01.tar.gz .. "
            f"images_12.tar.gz) found in {root}"
        )
    listing = SourceListing(
        source=str(root.resolve()),
        shards=found,
        data_entry=_data_entry(root, data_entry),
        bbox=_optional(root, nih.BBOX_LIST),
        train_val=_optional(root, nih.TRAIN_VAL_LIST),
        test=_optional(root, nih.TEST_LIST),
    )
    log.info("source %s: %d archives, metadata %s", source, len(found), listing.data_entry.name)
    return listing


def open_file(ref: FileRef) -> IO[bytes]:
    """Open a source file for streaming reads."""
    return open(ref.location, "rb")


def read_file(ref: FileRef) -> bytes:
    """Read a (small) source file whole."""
    with open_file(ref) as fh:
        return fh.read()
