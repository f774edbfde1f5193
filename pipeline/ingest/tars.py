"""Read the members of a (gzipped) tar archive as a stream, without seeking, safely.

The budget (:mod:`pipeline.ingest.archives`) is spent on the decompressed stream itself, so headers, skipped
members, members of unknown type and the end padding all count. A tar.gz that breaks off part-way keeps the
members before the break; only a file that is no tar at all, or a budget passed, is an error.

A tar header that extends the next one (pax ``x``, GNU long name ``L``/``K``) larger than ``header_bytes`` is
skipped in bounded pieces, never read into memory, and the member it describes is reported; a global pax header
that large ends the archive like a broken header. Sparse tar members (GNU ``S`` type, pax ``GNU.sparse.*``) are
reported without reading their sparse map: holes the archive does not store are no image.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from typing import IO, Any, cast

from pipeline.errors import BadDataError
from pipeline.ingest.archives import Budget, Limits, Member, Readable, unsafe_path

log = logging.getLogger(__name__)

_TAR_BUFSIZE = 1 << 20
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

    def __init__(self, fh: Readable, budget: Budget) -> None:
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
    budget = Budget(name, limits, fh.tell)
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


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo, budget: Budget) -> Member:
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
