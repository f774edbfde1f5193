"""Stream the members of a zip or tar.gz image archive, safely.

Nothing here writes to a file system: members are read into memory one at a time (bounded by
``Limits.member_bytes``), so absolute paths, ``..`` and links can never escape anywhere; they are
reported as unsafe instead. Per-member damage (CRC errors, truncated or unreadable members) is reported on the
member and the archive goes on; a tar.gz that breaks off part-way keeps the members before the break.
Only a file that is no zip or tar at all is an error.

Budgets (:class:`Limits`) stop hostile archives, and they count every byte that is inflated, whatever becomes of
it: a zip member is counted as it inflates, also when it then fails its CRC or breaks off; a tar is counted on the
decompressed stream itself, so headers, skipped members, members of unknown type and the end padding all count.
The archive is refused (:class:`~pipeline.errors.BadDataError`) when

* the inflated bytes pass ``archive_bytes``, or ``ratio`` times the compressed bytes (the zip's size, or what the
  tar stream has consumed so far) once past ``ratio_free`` (real PNG archives hardly compress: about 1.0);
* two zip entries share one local header or their data overlap (one compressed member listed many times);
* it holds more than ``members`` members.

A tar header that extends the next one (pax ``x``, GNU long name ``L``/``K``) larger than ``header_bytes`` is
skipped in bounded pieces, never read into memory, and the member it describes is reported; a global pax header
that large ends the archive like a broken header. Sparse tar members (GNU ``S`` type, pax ``GNU.sparse.*``) are
reported without reading their sparse map: holes the archive does not store are no image.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, Protocol, cast

from pipeline.errors import BadDataError

log = logging.getLogger(__name__)

MAX_MEMBER_BYTES = 64 << 20  # real images weigh 0.1-1 MB
MAX_ARCHIVE_BYTES = 20 << 30  # the largest real shard holds about 4.5 GB
MAX_MEMBERS = 1_000_000  # the largest real shard holds 10,000 images
MAX_RATIO = 20  # inflated bytes per compressed byte; real PNG archives: about 1.0
RATIO_FREE_BYTES = 32 << 20  # small archives of tiny members (tar headers, zero padding) inflate more than that
MAX_HEADER_BYTES = 1 << 20  # a pax header or GNU long name; real ones: well under 1 KB
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
_TAR_BUFSIZE = 1 << 20
_READ_PIECE = 1 << 20
_ZIP_LOCAL_HEADER = 30


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


class _Budget:
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


def _counted_read(fh: IO[bytes], limit: int, budget: _Budget) -> bytes | None:
    """Read a member in pieces, each counted as it inflates; None when it holds more than ``limit`` bytes.

    A read that fails (a CRC error at the member's end, a broken stream) is counted at the size it was asked
    for: it may have inflated that much before failing.
    """
    parts, size = [], 0
    while size <= limit:
        want = min(_READ_PIECE, limit + 1 - size)
        try:
            piece = fh.read(want)
        except Exception:
            budget.spend(want)
            raise
        if not piece:
            break
        budget.spend(len(piece))
        parts.append(piece)
        size += len(piece)
    return None if size > limit else b"".join(parts)


def iter_zip(fh: Readable, name: str, limits: Limits | None = None) -> Iterator[Member]:
    """Yield the file members of a zip archive in stored order.

    Raises:
        BadDataError: not a zip, entries that overlap, or a budget of :class:`Limits` passed (names the archive).
    """
    try:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        archive = zipfile.ZipFile(cast(IO[bytes], fh))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise BadDataError(f"{name} is not a readable zip archive ({exc}); re-download it") from exc
    budget = _Budget(name, limits or Limits(), lambda: size)
    with archive:
        stops = _zip_layout(archive, name)
        for info in archive.infolist():
            if info.is_dir():
                continue
            budget.count()
            yield _zip_member(archive, fh, info, budget, stops[id(info)])


def _overlap(name: str, first: zipfile.ZipInfo, second: zipfile.ZipInfo | None) -> BadDataError:
    other = f"entry {second.filename!r}" if second is not None else "the central directory"
    return BadDataError(
        f"{name}: zip entry {first.filename!r} overlaps {other} (the same compressed data listed more than once: "
        "a hostile archive, e.g. a zip bomb of repeated entries); refusing it; re-download it from the source"
    )


def _zip_layout(archive: zipfile.ZipFile, name: str) -> dict[int, int]:
    """Where each entry's data must end (the next local header, or the central directory), by ``id`` of its info.

    Entries that share a local header, or whose data cannot fit before the next one, fail the archive here,
    before anything is inflated; :func:`_zip_member` checks the exact end (with the local header's own name and
    extra fields) before it inflates a member.
    """
    infos = sorted(archive.infolist(), key=lambda i: i.header_offset)
    end_of_data: int = getattr(archive, "start_dir", 0) or max((i.header_offset for i in infos), default=0)
    stops: dict[int, int] = {}
    for at, info in enumerate(infos):
        following = infos[at + 1] if at + 1 < len(infos) else None
        stop = following.header_offset if following is not None else max(end_of_data, info.header_offset)
        if info.header_offset + _ZIP_LOCAL_HEADER + info.compress_size > stop:
            raise _overlap(name, info, following)
        stops[id(info)] = stop
    return stops


def _zip_data_end(fh: Readable, info: zipfile.ZipInfo) -> int | None:
    """The end of an entry's compressed data, from its local header; None when that header cannot be read."""
    fh.seek(info.header_offset)
    header = fh.read(_ZIP_LOCAL_HEADER)
    if len(header) < _ZIP_LOCAL_HEADER:
        return None
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return int(info.header_offset) + _ZIP_LOCAL_HEADER + int(name_length) + int(extra_length) + info.compress_size


def _zip_member(archive: zipfile.ZipFile, fh: Readable, info: zipfile.ZipInfo, budget: _Budget, stop: int) -> Member:
    problem = unsafe_path(info.filename)
    if problem:
        return Member(info.filename, None, problem)
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return Member(info.filename, None, "symbolic link member")
    max_member = budget.limits.member_bytes
    if info.file_size > max_member:
        return Member(info.filename, None, f"member larger than {max_member} bytes")
    try:
        data_end = _zip_data_end(fh, info)
        if data_end is not None and data_end > stop:
            raise _overlap(budget.archive, info, next((i for i in archive.infolist() if i.header_offset == stop), None))
        with archive.open(info) as member:
            data = _counted_read(member, max_member, budget)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as exc:
        return Member(info.filename, None, f"unreadable zip member: {exc}")
    if data is None:
        return Member(info.filename, None, f"member inflates beyond {max_member} bytes")
    return Member(info.filename, data)


_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)
#: What a decompressor raises on damaged data (bz2 raises a bare OSError).
_UNPACK_ERRORS = (EOFError, zlib.error, OSError, lzma.LZMAError)
_EXTENDED_HEADERS = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class _Unpacked:
    """The decompressed stream of a tar.gz (or a plain, bzip2 or xz tar under that name), for :mod:`tarfile`.

    Every byte it hands out is spent from the archive's budget: this is where a tar's inflation is counted.
    :mod:`gzip` checks the trailer's CRC and length. A decompression error ends the stream (``b""``)
    and is kept in ``error``: raised inside tarfile's buffered reads it would discard the good bytes
    read just before it.
    """

    def __init__(self, fh: Readable, budget: _Budget) -> None:
        magic = fh.read(6)
        fh.seek(0)
        raw = cast(IO[bytes], fh)
        self.inner: gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile | None = None
        if magic.startswith(b"\x1f\x8b"):
            self.inner = gzip.GzipFile(fileobj=raw, mode="rb")
        elif magic.startswith(b"BZh"):
            self.inner = bz2.BZ2File(raw)
        elif magic == b"\xfd7zXZ\x00":
            self.inner = lzma.LZMAFile(raw)  # noqa: SIM115 - over the caller's file, which the caller closes
        self.fh, self.budget = fh, budget
        self.error: str | None = None

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            # read1: one decompression step, so an error cannot swallow bytes already unpacked
            data = self.inner.read1(size) if self.inner is not None else self.fh.read(size)
        except _UNPACK_ERRORS as exc:
            self.error = str(exc) or type(exc).__name__
            return b""
        self.budget.spend(len(data))
        return data


def _tarinfo_type(header_bytes: int) -> type[tarfile.TarInfo]:
    """A :class:`tarfile.TarInfo` that bounds the headers tarfile would read whole (``_proc_member`` is its hook).

    An extended header over ``header_bytes`` is skipped unread; a pax header within it is read here first and
    checked in linear time (tarfile's own parser takes quadratic time on long runs of digits: 256 KB of them
    cost it two minutes), then handed back to tarfile. Either failure marks the member the header describes.
    """

    class BoundedTarInfo(tarfile.TarInfo):
        refused: str | None = None

        def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
            stream: Any = archive.fileobj
            base: Any = super()
            pax = self.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.XGLTYPE)
            what = "pax" if pax else "GNU long-name"
            if self.type in (*_EXTENDED_HEADERS, tarfile.XGLTYPE) and self.size > header_bytes:
                stream.seek(stream.tell() + _padded(self.size))  # a stream reads forward in bounded pieces
                return self._refuse(archive, f"{what} header of {self.size} bytes, over the {header_bytes}-byte limit")
            if pax:
                head = stream.read(_padded(self.size))
                problem = _pax_problem(head[: self.size])
                if problem:
                    return self._refuse(archive, f"{what} header {problem}")
                archive.fileobj = cast(Any, _Replay(head, stream))
                try:
                    member: tarfile.TarInfo = base._proc_member(archive)
                finally:
                    archive.fileobj = stream
                return member
            if self.type == tarfile.GNUTYPE_SPARSE:
                return self._skip_sparse_map(archive)
            member = base._proc_member(archive)
            return member

        def _refuse(self, archive: tarfile.TarFile, reason: str) -> tarfile.TarInfo:
            """The member after this (already skipped) header, marked with why its header was not used."""
            if self.type == tarfile.XGLTYPE:
                raise tarfile.ReadError(f"global {reason}")  # it applies to every member after it: the archive ends
            try:
                described = self.fromtarfile(archive)
            except tarfile.HeaderError as exc:
                raise tarfile.ReadError(f"bad header after a refused extended header: {exc}") from None
            described.offset = self.offset
            cast(Any, described).refused = f"{reason}: not read (a hostile or damaged archive)"
            return described

        def _skip_sparse_map(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
            # What tarfile's _proc_sparse does, without keeping the map (the member is reported, never read).
            stream: Any = archive.fileobj
            _, extended, real_size = cast(Any, self)._sparse_structs
            read = 0
            while extended:
                read += tarfile.BLOCKSIZE
                block = stream.read(tarfile.BLOCKSIZE)
                if read > header_bytes or len(block) < tarfile.BLOCKSIZE:
                    raise tarfile.ReadError(f"GNU sparse map of {self.name!r} over {header_bytes} bytes or truncated")
                extended = bool(block[504])
            cast(Any, self).sparse = []
            self.offset_data = stream.tell()
            archive.offset = self.offset_data + _padded(self.size)
            self.size = real_size
            return self

        def _proc_gnusparse_10(self, member: tarfile.TarInfo, pax: dict[str, str], archive: tarfile.TarFile) -> None:
            # The map heads the member's data and is skipped whole with it: the member is reported, never read.
            cast(Any, member).sparse = []

    return BoundedTarInfo


_DIGITS = bytes(1 if chr(i).isdigit() and i < 128 else 0 for i in range(256))
MAX_PAX_DIGIT_RUN = 256  # pax values are numbers of at most about 30 digits, paths and names


def _pax_problem(records: bytes) -> str | None:
    """Why a pax header's bytes are not well-formed ``"<length> <key>=<value>\\n"`` records, else None (linear time)."""
    if records.translate(_DIGITS).find(b"\x01" * (MAX_PAX_DIGIT_RUN + 1)) >= 0:
        return f"holds a run of more than {MAX_PAX_DIGIT_RUN} digits"
    pos = 0
    while pos < len(records) and records[pos] != 0:
        space = records.find(b" ", pos, pos + 21)
        length = int(records[pos:space]) if space > pos and records[pos:space].isdigit() else 0
        end = pos + length
        if length < space - pos + 4 or end > len(records) or records[end - 1] != 0x0A:
            return f"holds a malformed record at byte {pos}"
        if b"=" not in records[space + 1 : end]:
            return f"holds a record without '=' at byte {pos}"
        pos = end
    return None


class _Replay:
    """A tar stream that hands out ``head`` first (a header read to check it, given back to tarfile), then reads on."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self.head, self.stream = head, stream

    def read(self, size: int) -> bytes:
        if not self.head:
            data: bytes = self.stream.read(size)
            return data
        out, self.head = self.head[:size], self.head[size:]
        return out + self.stream.read(size - len(out)) if len(out) < size else out

    def tell(self) -> int:
        position: int = self.stream.tell()
        return position - len(self.head)

    def seek(self, position: int) -> int:
        ahead = position - self.tell()
        if 0 <= ahead <= len(self.head):
            self.head = self.head[ahead:]
            return position
        self.head = b""
        offset: int = self.stream.seek(position)
        return offset


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def iter_tar(fh: Readable, name: str, limits: Limits | None = None) -> Iterator[Member]:
    """Yield the members of a (gzipped) tar archive as a stream, without seeking.

    A stream that breaks off (truncated download, corrupt gzip, a broken header) ends the archive: the
    member being read, or a pseudo-member named after the last good one, reports the break, and what
    came before stays.

    Raises:
        BadDataError: not a tar, or a budget of :class:`Limits` passed (names the archive).
    """
    limits = limits or Limits()
    budget = _Budget(name, limits, fh.tell)
    stream = _Unpacked(fh, budget)
    try:
        archive = tarfile.open(  # noqa: SIM115
            fileobj=cast(IO[bytes], stream),
            mode="r|",
            bufsize=_TAR_BUFSIZE,
            tarinfo=_tarinfo_type(limits.header_bytes),
        )
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
        problem = stream.error or (errors[0] if errors else None) or _trailing_problem(archive) or stream.error
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


def _trailing_problem(archive: tarfile.TarFile) -> str | None:
    """Read what follows the tar's end: zeros up to the gzip trailer, else the archive is damaged.

    :mod:`tarfile` takes a damaged or missing header for the end of the archive; the rest of the stream
    tells a real end from a break.
    """
    rest: Any = archive.fileobj
    try:
        while chunk := rest.read(_TAR_BUFSIZE):
            if chunk.count(0) != len(chunk):
                return "data after the archive's end (a damaged member header)"
    except _TAR_ERRORS as exc:
        return str(exc)
    return None


def _tar_problem(info: tarfile.TarInfo, max_member: int) -> str | None:
    refused: str | None = getattr(info, "refused", None)
    problem = refused or unsafe_path(info.name)
    if problem:
        return problem
    if info.issym() or info.islnk():
        return "link member (symbolic or hard link)"
    return _tar_kind_problem(info, max_member)


def _tar_kind_problem(info: tarfile.TarInfo, max_member: int) -> str | None:
    if info.type not in tarfile.SUPPORTED_TYPES:
        return f"tar member of unknown type {info.type!r}"
    if not info.isfile():
        return "not a regular file (device, fifo or other special member)"
    if info.issparse():
        return "sparse tar member (GNU sparse: holes the archive does not store); not an image as stored"
    if info.size > max_member:
        return f"member larger than {max_member} bytes"
    return None


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo, budget: _Budget) -> Member:
    problem = _tar_problem(info, budget.limits.member_bytes)
    if problem:
        return Member(info.name, None, problem)  # the stream still inflates it to skip past it: counted there
    try:
        extracted = archive.extractfile(info)
        data = extracted.read() if extracted is not None else b""
    except _TAR_ERRORS as exc:
        return Member(info.name, None, f"member truncated: {exc}")
    if len(data) != info.size:
        return Member(info.name, None, f"member truncated: {len(data)} of {info.size} bytes")
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
