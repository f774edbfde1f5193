"""What every archive reader shares: members, limits and the budget that counts them; unpacked folders.

Nothing in :mod:`pipeline.ingest` writes an archive member to a file system: members are read into memory one
at a time (bounded by ``Limits.member_bytes``), so absolute paths, ``..`` and links can never escape anywhere;
they are reported as unsafe instead (:func:`unsafe_path`). Per-member damage (CRC errors, truncated or
unreadable members) is reported on the :class:`Member` and the archive goes on. The readers:
:func:`pipeline.ingest.zips.iter_zip`, :func:`pipeline.ingest.tars.iter_tar`, and :class:`FolderShard` here for
a folder of loose files; :func:`pipeline.ingest.extract.iter_members` picks one by the archive's name.

Budgets (:class:`Limits`, spent through :class:`Budget`) stop hostile archives, and they count every byte that
is inflated, whatever becomes of it (each reader says where it counts). The archive is refused
(:class:`~pipeline.errors.BadDataError`) when

* the inflated bytes pass ``archive_bytes``, or ``ratio`` times the compressed bytes (the zip's size, or what the
  tar stream has consumed so far) once past ``ratio_free`` (real PNG archives hardly compress: about 1.0);
* it holds more than ``members`` members;
* (zips) two entries share one local header or their data overlap (one compressed member listed many times).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from pipeline.errors import BadDataError

MAX_MEMBER_BYTES = 64 << 20  # real images weigh 0.1-1 MB
MAX_ARCHIVE_BYTES = 20 << 30  # the largest real shard holds about 4.5 GB
MAX_MEMBERS = 1_000_000  # the largest real shard holds 10,000 images
MAX_RATIO = 20  # inflated bytes per compressed byte; real PNG archives: about 1.0
RATIO_FREE_BYTES = 32 << 20  # small archives of tiny members (tar headers, zero padding) inflate more than that
MAX_HEADER_BYTES = 1 << 20  # a pax header or GNU long name; real ones: well under 1 KB


@dataclass(frozen=True)
class Limits:
    """How much one archive may hold before it is treated as hostile.

    Attributes:
        member_bytes: Uncompressed bytes of one member.
        archive_bytes: Inflated bytes of the whole archive (every byte counted, also of failed members).
        members: Members of the archive.
        ratio: Inflated bytes per compressed byte, over the whole archive, once past ``ratio_free``.
        ratio_free: Inflated bytes allowed before ``ratio`` applies.
        header_bytes: Bytes of one tar extended header (pax, GNU long name or sparse map).
    """

    member_bytes: int = MAX_MEMBER_BYTES
    archive_bytes: int = MAX_ARCHIVE_BYTES
    members: int = MAX_MEMBERS
    ratio: int = MAX_RATIO
    ratio_free: int = RATIO_FREE_BYTES
    header_bytes: int = MAX_HEADER_BYTES


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


class Budget:
    """Counts members and inflated bytes; stops the archive when a limit is passed.

    ``packed`` says how many compressed bytes the inflated ones came from (None: not compressed, no ratio).
    """

    def __init__(self, archive: str, limits: Limits, packed: Callable[[], int] | None = None) -> None:
        self.archive, self.limits, self.used, self.members = archive, limits, 0, 0
        self.packed = packed

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
        if self.packed is None or self.used <= self.limits.ratio_free:
            return
        packed = self.packed()
        if self.used > self.limits.ratio * packed:
            raise BadDataError(
                f"{self.archive}: {self.used} bytes inflated from {packed} compressed bytes, more than "
                f"{self.limits.ratio} times as many (image archives hardly compress); refusing to go on (a zip bomb)"
            )


class FolderShard:
    """A folder of loose files taken as one shard, as Kaggle's download unpacks (``images_001/images/*.png``).

    Links are reported, never followed. ``sha256`` covers every file's relative path, size and content,
    so it changes whenever the folder's content does (it stands in for the archive's SHA-256).
    """

    def __init__(self, root: str, name: str, limits: Limits | None = None) -> None:
        self.root, self.name, self.budget = root, name, Budget(name, limits or Limits())
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
