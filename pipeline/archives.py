"""Stream the members of a zip or tar.gz image archive, safely.

Nothing here writes to a file system: members are read into memory one at a time (bounded by
``Limits.member_bytes``), so absolute paths, ``..`` and links can never escape anywhere; they are
reported as unsafe instead. The total uncompressed size and the member count are bounded too, which
stops zip bombs. Per-member damage (CRC errors, truncated or unreadable members) is reported on the
member and the archive goes on; a tar.gz that breaks off part-way keeps the members before the break.
Only a file that is no zip or tar at all is an error.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, Literal, Protocol, cast

from pipeline.errors import BadDataError

log = logging.getLogger(__name__)

MAX_MEMBER_BYTES = 64 << 20  # real images weigh 0.1-1 MB
MAX_ARCHIVE_BYTES = 20 << 30  # the largest real shard holds about 4.5 GB
MAX_MEMBERS = 1_000_000  # the largest real shard holds 10,000 images
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
_TAR_BUFSIZE = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much one archive may hold before it is treated as hostile."""

    member_bytes: int = MAX_MEMBER_BYTES
    archive_bytes: int = MAX_ARCHIVE_BYTES
    members: int = MAX_MEMBERS


class Readable(Protocol):
    """What the readers need of a file: ``read``, and for zips ``seek``/``tell``."""

    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


@dataclass(frozen=True)
class Member:
    """One archive member: its path, and either its bytes or why it was not read."""

    path: str
    data: bytes | None
    problem: str | None = None


def unsafe_path(path: str) -> str | None:
    """Say why a member path is unsafe (absolute, drive letter, ``..``, NUL), or None when it is fine."""
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return "absolute member path"
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        return "member path escapes the archive root ('..')"
    if "\0" in path:
        return "member path holds a NUL byte"
    return None


def _bounded_read(fh: IO[bytes], limit: int) -> bytes | None:
    data = fh.read(limit + 1)
    return None if len(data) > limit else data


class _Budget:
    """Counts members and uncompressed bytes; stops the archive when a limit is passed."""

    def __init__(self, archive: str, limits: Limits) -> None:
        self.archive, self.limits, self.used, self.members = archive, limits, 0, 0

    def count(self) -> None:
        self.members += 1
        if self.members > self.limits.members:
            raise BadDataError(
                f"{self.archive}: more than {self.limits.members} members; refusing to go on (a hostile archive?)"
            )

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limits.archive_bytes:
            raise BadDataError(
                f"{self.archive}: uncompressed content exceeds {self.limits.archive_bytes} bytes; "
                "refusing to go on (a zip bomb, or raise the archive size limit)"
            )


def iter_zip(fh: Readable, name: str, limits: Limits | None = None) -> Iterator[Member]:
    """Yield the file members of a zip archive in stored order."""
    try:
        archive = zipfile.ZipFile(cast(IO[bytes], fh))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise BadDataError(f"{name} is not a readable zip archive ({exc}); re-download it") from exc
    budget = _Budget(name, limits or Limits())
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            budget.count()
            yield _zip_member(archive, info, budget)


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Member:
    problem = unsafe_path(info.filename)
    if problem:
        return Member(info.filename, None, problem)
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return Member(info.filename, None, "symbolic link member")
    max_member = budget.limits.member_bytes
    if info.file_size > max_member:
        return Member(info.filename, None, f"member larger than {max_member} bytes")
    try:
        with archive.open(info) as member:
            data = _bounded_read(member, max_member)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as exc:
        return Member(info.filename, None, f"unreadable zip member: {exc}")
    if data is None:
        return Member(info.filename, None, f"member inflates beyond {max_member} bytes")
    budget.spend(len(data))
    return Member(info.filename, data)


_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


class _Unpacked:
    """The decompressed stream of a tar.gz, for :mod:`tarfile`.

    :mod:`gzip` checks the trailer's CRC and length. A decompression error ends the stream (``b""``)
    and is kept in ``error``: raised inside tarfile's buffered reads it would discard the good bytes
    read just before it.
    """

    def __init__(self, fh: Readable) -> None:
        magic = fh.read(2)
        fh.seek(0)
        self.gz = gzip.GzipFile(fileobj=cast(IO[bytes], fh), mode="rb") if magic == b"\x1f\x8b" else None
        self.fh = fh
        self.error: str | None = None

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            # read1: one decompression step, so an error cannot swallow bytes already unpacked
            data = self.gz.read1(size) if self.gz is not None else self.fh.read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self.error = str(exc) or type(exc).__name__
            return b""
        return data


def iter_tar(fh: Readable, name: str, limits: Limits | None = None) -> Iterator[Member]:
    """Yield the members of a (gzipped) tar archive as a stream, without seeking.

    A stream that breaks off (truncated download, corrupt gzip, a broken header) ends the archive: the
    member being read, or a pseudo-member named after the last good one, reports the break, and what
    came before stays.
    """
    budget = _Budget(name, limits or Limits())
    stream = _Unpacked(fh)
    try:
        mode: Literal["r|", "r|*"] = "r|" if stream.gz else "r|*"  # plain tar, or bz2/xz under a .tar.gz name
        archive = tarfile.open(fileobj=cast(IO[bytes], stream), mode=mode, bufsize=_TAR_BUFSIZE)  # noqa: SIM115
    except _TAR_ERRORS as exc:
        raise BadDataError(f"{name} is not a readable tar archive ({stream.error or exc}); re-download it") from exc
    with archive:
        last, broken, errors = "", False, list[str]()
        for info in _headers(archive, name, errors):
            last = info.name
            if info.isdir():
                continue
            budget.count()
            member = _tar_member(archive, info, budget)
            broken = member.problem is not None and member.problem.startswith("member truncated")
            yield member
        problem = stream.error or (errors[0] if errors else None) or _trailing_problem(archive, budget) or stream.error
        if problem and not last:
            raise BadDataError(f"{name} is not a readable tar archive ({problem}); re-download it")
        if problem and not broken:
            log.warning("%s: the archive breaks off after %s (%s)", name, last, problem)
            yield Member(f"{last}#after", None, f"archive truncated or corrupt after this member: {problem}")


def _headers(archive: tarfile.TarFile, name: str, errors: list[str]) -> Iterator[tarfile.TarInfo]:
    """The members' headers; a header tarfile cannot parse ends them, its error goes to ``errors``."""
    seen = False
    try:
        for info in archive:
            seen = True
            yield info
    except _TAR_ERRORS as exc:
        if not seen:
            raise BadDataError(f"{name} is not a readable tar archive ({exc}); re-download it") from exc
        errors.append(str(exc))


def _trailing_problem(archive: tarfile.TarFile, budget: _Budget) -> str | None:
    """Read what follows the tar's end: zeros up to the gzip trailer, else the archive is damaged.

    :mod:`tarfile` takes a damaged or missing header for the end of the archive; the rest of the stream
    tells a real end from a break.
    """
    rest: Any = archive.fileobj
    try:
        while chunk := rest.read(_TAR_BUFSIZE):
            budget.spend(len(chunk))
            if chunk.count(0) != len(chunk):
                return "data after the archive's end (a damaged member header)"
    except _TAR_ERRORS as exc:
        return str(exc)
    return None


def _tar_problem(info: tarfile.TarInfo, max_member: int) -> str | None:
    problem = unsafe_path(info.name)
    if problem:
        return problem
    if info.issym() or info.islnk():
        return "link member (symbolic or hard link)"
    if not info.isfile():
        return "not a regular file (device, fifo or other special member)"
    if info.size > max_member:
        return f"member larger than {max_member} bytes"
    return None


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo, budget: _Budget) -> Member:
    problem = _tar_problem(info, budget.limits.member_bytes)
    if problem:
        if info.isfile():
            budget.spend(info.size)  # the stream must still inflate an oversized member to skip past it
        return Member(info.name, None, problem)
    try:
        extracted = archive.extractfile(info)
        data = extracted.read() if extracted is not None else b""
    except _TAR_ERRORS as exc:
        return Member(info.name, None, f"member truncated: {exc}")
    if len(data) != info.size:
        return Member(info.name, None, f"member truncated: {len(data)} of {info.size} bytes")
    budget.spend(len(data))
    return Member(info.name, data)


def archive_kind(name: str) -> str | None:
    """``zip`` or ``tar`` from an archive's name, None for other names."""
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    return None


class FolderShard:
    """A folder of loose files taken as one shard, as Kaggle's download unpacks (``images_001/images/*.png``).

    Links are reported, never followed. ``sha256`` covers every file's relative path, size and content,
    so it changes whenever the folder's content does (it stands in for the archive's SHA-256).
    """

    def __init__(self, root: str, name: str, limits: Limits | None = None) -> None:
        self.root, self.name, self.budget = root, name, _Budget(name, limits or Limits())
        self._digest = hashlib.sha256()

    @property
    def sha256(self) -> str:
        """Digest of what :meth:`members` has read so far (all of it once exhausted)."""
        return self._digest.hexdigest()

    def members(self) -> Iterator[Member]:
        """Yield the folder's files in sorted order, at any depth."""
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for link in [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                dirs.remove(link)
                yield Member(self._rel(folder, link), None, "symbolic link member")
            for file in sorted(files):
                self.budget.count()
                yield self._member(os.path.join(folder, file))

    def _rel(self, folder: str, name: str) -> str:
        return os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/")

    def _member(self, path: str) -> Member:
        rel = self._rel(os.path.dirname(path), os.path.basename(path))
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            return Member(rel, None, "symbolic link member")
        if not stat.S_ISREG(info.st_mode):
            return Member(rel, None, "not a regular file (device, fifo or other special member)")
        if info.st_size > self.budget.limits.member_bytes:
            return Member(rel, None, f"member larger than {self.budget.limits.member_bytes} bytes")
        with open(path, "rb") as fh:
            data = fh.read()
        self.budget.spend(len(data))
        self._digest.update(f"{rel}\0{len(data)}\0".encode() + hashlib.sha256(data).digest())
        return Member(rel, data)


def iter_members(fh: Readable, name: str, limits: Limits | None = None) -> Iterator[Member]:
    """Yield the members of an archive, choosing the reader by the archive's name."""
    kind = archive_kind(name)
    if kind == "zip":
        return iter_zip(fh, name, limits)
    if kind == "tar":
        return iter_tar(fh, name, limits)
    raise BadDataError(f"{name}: unknown archive type (expected .zip or .tar.gz)")
