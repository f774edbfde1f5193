"""Stream the members of a zip or tar.gz image archive, safely.

Nothing here writes to a file system: members are read into memory one at a time (bounded by
``max_member_bytes``), so absolute paths, ``..`` and links can never escape anywhere; they are
reported as unsafe instead. The total uncompressed size is bounded too, which stops zip bombs.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from pipeline.errors import BadDataError

MAX_MEMBER_BYTES = 64 << 20
MAX_ARCHIVE_BYTES = 64 << 30


@dataclass(frozen=True)
class Member:
    """One archive member: its path, and either its bytes or why it was not read."""

    path: str
    data: bytes | None
    problem: str | None = None


class HashingReader:
    """A read-only stream wrapper that hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        """Read and hash up to ``n`` bytes."""
        chunk = self.raw.read(n)
        self.sha256.update(chunk)
        self.size += len(chunk)
        return chunk


def unsafe_path(path: str) -> str | None:
    """Say why a member path is unsafe (absolute, drive letter, ``..``), or None when it is fine."""
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return "absolute member path"
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        return "member path escapes the archive root ('..')"
    return None


def _bounded_read(fh: IO[bytes], limit: int) -> bytes | None:
    data = fh.read(limit + 1)
    return None if len(data) > limit else data


class _Budget:
    def __init__(self, archive: str, limit: int) -> None:
        self.archive, self.limit, self.used = archive, limit, 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise BadDataError(
                f"{self.archive}: uncompressed content exceeds {self.limit} bytes; "
                "refusing to go on (a zip bomb, or raise the archive size limit)"
            )


def iter_zip(
    fh: IO[bytes], name: str, max_member: int = MAX_MEMBER_BYTES, max_total: int = MAX_ARCHIVE_BYTES
) -> Iterator[Member]:
    """Yield the file members of a zip archive in stored order."""
    try:
        archive = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        raise BadDataError(f"{name} is not a readable zip archive ({exc}); re-download it") from exc
    budget = _Budget(name, max_total)
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            yield _zip_member(archive, info, budget, max_member)


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, max_member: int) -> Member:
    problem = unsafe_path(info.filename)
    if problem:
        return Member(info.filename, None, problem)
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return Member(info.filename, None, "symbolic link member")
    if info.file_size > max_member:
        return Member(info.filename, None, f"member larger than {max_member} bytes")
    try:
        with archive.open(info) as member:
            data = _bounded_read(member, max_member)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        return Member(info.filename, None, f"unreadable zip member: {exc}")
    if data is None:
        return Member(info.filename, None, f"member inflates beyond {max_member} bytes")
    budget.spend(len(data))
    return Member(info.filename, data)


def iter_tar(
    fh: IO[bytes], name: str, max_member: int = MAX_MEMBER_BYTES, max_total: int = MAX_ARCHIVE_BYTES
) -> Iterator[Member]:
    """Yield the members of a (gzipped) tar archive as a stream, without seeking."""
    budget = _Budget(name, max_total)
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as archive:
            for info in archive:
                if info.isdir():
                    continue
                yield _tar_member(archive, info, budget, max_member)
    except (tarfile.ReadError, EOFError, zlib.error, OSError) as exc:
        raise BadDataError(f"{name} is not a readable tar archive or is truncated ({exc}); re-download it") from exc


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo, budget: _Budget, max_member: int) -> Member:
    problem = unsafe_path(info.name)
    if problem:
        return Member(info.name, None, problem)
    if info.issym() or info.islnk():
        return Member(info.name, None, "link member (symbolic or hard link)")
    if not info.isfile():
        return Member(info.name, None, "not a regular file (device, fifo or other special member)")
    if info.size > max_member:
        return Member(info.name, None, f"member larger than {max_member} bytes")
    extracted = archive.extractfile(info)
    data = extracted.read() if extracted is not None else b""
    if len(data) != info.size:
        return Member(info.name, None, "member truncated")
    budget.spend(len(data))
    return Member(info.name, data)


def iter_members(fh: IO[bytes], name: str) -> Iterator[Member]:
    """Yield the members of an archive, choosing the reader by the archive's name."""
    if name.endswith(".zip"):
        return iter_zip(fh, name)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return iter_tar(fh, name)
    raise BadDataError(f"{name}: unknown archive type (expected .zip or .tar.gz)")
