"""Shard sizes and reproducible, streaming archive writers (zip with stored members, tar.gz).

Byte-identical output for identical input: fixed member timestamps, owner and permissions, gzip header
mtime 0 without a file name, ustar format, members in the order they are added.  Files are written under
a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

from pipeline.nih import SHARD_SIZES, TAR_SHARD_NAMES, ZIP_SHARD_NAMES

ArchiveKind = Literal["zip", "tar.gz"]
#: Member timestamp: the dataset's public release (September 2017).
ZIP_DATE_TIME = (2017, 9, 26, 0, 0, 0)
TAR_MTIME = 1_506_384_000  # 2017-09-26T00:00:00Z
MEMBER_DIR = "images"


def shard_names(kind: ArchiveKind) -> tuple[str, ...]:
    """The 12 shard names of an archive kind (Kaggle's zips or NIH Box's tarballs)."""
    return ZIP_SHARD_NAMES if kind == "zip" else TAR_SHARD_NAMES


def shard_counts(n: int) -> list[int]:
    """Split ``n`` images over the 12 shards in the real proportions (largest remainder, exact sum).

    Ties go to the lower shard.  With ``n >= 12`` every shard gets at least one image.
    """
    total = sum(SHARD_SIZES)
    quotas = [n * size / total for size in SHARD_SIZES]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    if n >= len(counts):
        for i in range(len(counts)):
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] += 1
    return counts


class ShardWriter(Protocol):
    """Adds one image member to an open shard."""

    def __call__(self, name: str, data: bytes) -> None: ...


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` on success, delete it on error."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _zip_shard(path: Path) -> Iterator[ShardWriter]:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(f"{MEMBER_DIR}/{name}", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever the host
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)

        yield add


@contextmanager
def _tar_shard(path: Path) -> Iterator[ShardWriter]:
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.USTAR_FORMAT) as archive,
    ):

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{MEMBER_DIR}/{name}")
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))

        yield add


@contextmanager
def open_shard(path: Path, kind: ArchiveKind) -> Iterator[ShardWriter]:
    """Open a shard for streaming writes; it appears at ``path`` only once closed without error."""
    with atomic_path(path) as partial, (_zip_shard if kind == "zip" else _tar_shard)(partial) as add:
        yield add


def write_text(path: Path, text: str) -> None:
    """Write an ASCII text file with ``\\n`` line ends, atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="ascii", newline="\n")
