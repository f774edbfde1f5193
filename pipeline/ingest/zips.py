"""Read the members of a zip archive from a seekable file, safely (see :mod:`pipeline.ingest.archives`).

A member is counted against the archive's budget as it inflates, also when it then fails its CRC or breaks off.
Before anything is inflated, the zip's layout is checked: two entries that share one local header, or whose
data overlap (one compressed member listed many times: a zip bomb of repeated entries), refuse the archive.
Only a file that is no zip at all, or a budget passed, is an error; a damaged member is reported on it.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, cast

from pipeline.errors import BadDataError
from pipeline.ingest.archives import Budget, Limits, Member, Readable, unsafe_path

_READ_PIECE = 1 << 20
_ZIP_LOCAL_HEADER = 30


def _counted_read(fh: IO[bytes], limit: int, budget: Budget) -> bytes | None:
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
    budget = Budget(name, limits or Limits(), lambda: size)
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


def _zip_member(archive: zipfile.ZipFile, fh: Readable, info: zipfile.ZipInfo, budget: Budget, stop: int) -> Member:
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
