"""One source file: what it is (:class:`FileRef`), how to tell it unchanged, and how to read it.

Every file carries a cheap fingerprint that tells an unchanged file without reading it:

- a local file: size, mtime, ctime, inode and device (a file replaced by one of equal size, even with its
  mtime set back, has a new ctime, and usually a new inode);
- an unpacked shard folder: the same for every file in it, hashed in path order;
- an S3 object: its ETag and size (the endpoint and key are part of :func:`content_identity`);
- an HTTP file: its strong ETag and Content-Length, else its Last-Modified (or weak ETag) and
  Content-Length. That is weaker: a server that sends only Last-Modified, to the second, cannot tell a
  replacement of equal length made within the same second (or with the mtime set back); such a file is
  taken as unchanged. A server that sends neither gives no fingerprint: its archives are read every run.

:func:`content_identity` turns location and fingerprint into the key under which extraction remembers
which archive (by SHA-256) it found there; a fingerprint never stands in for content on its own.

Reading: :func:`open_file` gives a seekable stream that hashes what it reads (local, S3 or HTTP);
:func:`read_file` reads a small file whole, refusing one over its kind's size limit (:data:`MAX_FILE_BYTES`,
far above NIH's own files) before a byte of it is read (:func:`check_size`), so a wrong or hostile file costs
no memory; :func:`hash_file` and :func:`verify_md5` check a file against its checksum list.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config import source_store_config
from pipeline.errors import BadDataError, FileTooLargeError, SourceNotFoundError
from pipeline.ingest import remote, remote_http
from pipeline.ingest.rangefile import Digests, RangeFile

#: Fingerprint kind of a remote file that carries no validator: never taken as unchanged.
NO_FINGERPRINT = "none"

_MIB = 1 << 20
#: Largest metadata file read, per kind (bytes). NIH's files: Data_Entry_2017[_v2020].csv about 8 MB, the box
#: list about 90 KB, train_val_list.txt about 1.5 MB, test_list.txt about 0.4 MB, an md5 list under 1 KB.
#: A file over its limit is refused before it is read (it is not the file it is named after).
MAX_FILE_BYTES: dict[str, int] = {
    "data_entry": 128 * _MIB,
    "bbox": 16 * _MIB,
    "split_list": 32 * _MIB,
    "checksums": 16 * _MIB,
    "annotation": 128 * _MIB,
    "layer_spec": 1 * _MIB,
}
_KIND_TEXT: dict[str, tuple[str, str]] = {
    "data_entry": ("Data_Entry file", "about 8 MB"),
    "bbox": ("bounding-box list", "about 90 KB"),
    "split_list": ("split list", "at most 1.5 MB"),
    "checksums": ("md5 list", "under 1 KB"),
    "annotation": ("annotation layer file", "at most the size of a Data_Entry file, about 8 MB"),
    "layer_spec": ("annotation layer spec", "a few KB"),
}


@dataclass(frozen=True)
class FileRef:
    """One source file: its name, where it is, and a cheap fingerprint.

    ``validator`` pins remote reads to this version of the file (S3/HTTP ETag or Last-Modified);
    ``md5`` is the expected MD5 from a checksum list, when one lists the file.
    """

    name: str
    location: str
    size: int
    fingerprint: str
    validator: str = ""
    md5: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (for XCom and manifests)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRef:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


def is_folder(ref: FileRef) -> bool:
    """True for a shard that is a local folder of loose files rather than an archive."""
    return ref.fingerprint.startswith("folder:")


def is_local(ref: FileRef) -> bool:
    """True for a file or folder on a local disk."""
    return not (remote.is_s3(ref.location) or remote.is_http(ref.location))


def _remote_fingerprint(info: remote.RemoteInfo) -> str:
    """``<kind>:<validator>:<size>``; the kind says how far the validator can be trusted (module doc)."""
    tag = info.validator
    if remote.is_s3(info.location):
        kind = "s3-etag"
    elif tag.startswith('"'):
        kind = "http-etag"
    elif tag:
        kind = "http-weak"  # Last-Modified, or a weak (W/) ETag
    else:
        kind = NO_FINGERPRINT
    return f"{kind}:{tag}:{info.size}"


def remote_ref(info: remote.RemoteInfo) -> FileRef:
    """The FileRef of a file found on an S3 or HTTP source."""
    return FileRef(info.name, info.location, info.size, _remote_fingerprint(info), info.validator)


def _stat_fingerprint(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}:{stat.st_dev}"


def local_ref(path: Path) -> FileRef:
    """The FileRef of a local file, fingerprinted as it is now."""
    stat = path.stat()
    return FileRef(path.name, str(path.resolve()), stat.st_size, f"file:{_stat_fingerprint(stat)}")


def folder_ref(path: Path) -> FileRef:
    """An unpacked shard folder; its fingerprint changes when an entry is added, removed, replaced or touched."""
    count = total = 0
    digest = hashlib.sha256()
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        for name in sorted([*names, *links]):
            full = os.path.join(folder, name)
            stat = os.lstat(full)
            count, total = count + 1, total + stat.st_size
            rel = os.path.relpath(full, path)
            digest.update(f"{rel}\0{stat.st_mode}:{_stat_fingerprint(stat)}\n".encode())
    return FileRef(path.name, str(path.resolve()), total, f"folder:{count}:{total}:{digest.hexdigest()}")


def refreshed(ref: FileRef) -> FileRef:
    """A local file or folder as it is now (fingerprint and size taken again); a remote one unchanged.

    Raises:
        SourceNotFoundError: the local file or folder is gone.
    """
    if not is_local(ref):
        return ref
    path = Path(ref.location)
    try:
        fresh = folder_ref(path) if is_folder(ref) else local_ref(path)
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"{ref.location} disappeared from the source while this run used it") from exc
    return replace(ref, size=fresh.size, fingerprint=fresh.fingerprint)


def content_identity(ref: FileRef) -> str | None:
    """SHA-256 of where a source file is and its fingerprint (with an S3 source's endpoint); None when the
    source gives no fingerprint (an HTTP server with neither ETag nor Last-Modified)."""
    if ref.fingerprint.startswith(NO_FINGERPRINT + ":"):
        return None
    endpoint = ""
    if remote.is_s3(ref.location):
        endpoint = source_store_config(ref.location).endpoint_url or "aws"
    material = {"location": ref.location, "endpoint": endpoint, "fingerprint": ref.fingerprint}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def check_size(source: str, size: int, kind: str) -> None:
    """Refuse a metadata file of ``kind`` (a key of ``MAX_FILE_BYTES``) over its limit, before it is read.

    Raises:
        FileTooLargeError: naming the file, its size, the limit and the real file's size.
    """
    limit = MAX_FILE_BYTES[kind]
    if size > limit:
        what, real = _KIND_TEXT[kind]
        raise FileTooLargeError(
            f"{source}: {size:,} bytes, over the {limit // _MIB} MiB limit for a {what} (NIH's is {real}); "
            "it was not read: this is not the file it is named after, check the source or download it again"
        )


def open_ranges(location: str, size: int, validator: str) -> remote.RangeSource:
    """A :class:`~pipeline.ingest.remote.RangeSource` for a local path, an ``s3://`` URI or an ``http(s)://`` URL."""
    if remote.is_s3(location):
        return remote.S3Ranges(location, size, validator)
    if remote.is_http(location):
        if remote_http.supports_ranges(location):
            return remote_http.HttpRanges(location, size, validator)
        return remote_http.spool_http(remote.RemoteInfo(location.rsplit("/", 1)[-1], location, size, validator))
    return remote.LocalRanges(location)


def open_file(ref: FileRef, *, md5: bool = False, prefetch: bool = True) -> RangeFile:
    """Open a source file as a seekable stream that hashes what it reads (see :class:`RangeFile`)."""
    return RangeFile(open_ranges(ref.location, ref.size, ref.validator), md5=md5, prefetch=prefetch)


def read_file(ref: FileRef, kind: str | None = None) -> bytes:
    """Read a (small) source file whole; with ``kind`` (a key of :data:`MAX_FILE_BYTES`) one over its kind's
    size limit is refused before it is read (:func:`check_size`).

    Raises:
        FileTooLargeError: the file is over its kind's limit.
        BadDataError: the file's size changed since it was listed.
    """
    if kind is not None:
        check_size(ref.location, ref.size, kind)
    with open_file(ref, prefetch=False) as fh:
        data = fh.read(ref.size + 1)  # a file grown since it was listed is refused below, not read whole
    if len(data) != ref.size:
        raise BadDataError(f"{ref.location}: read {len(data)} bytes, expected {ref.size}; it changed? rerun")
    return data


def hash_file(ref: FileRef) -> Digests:
    """SHA-256 and MD5 of a source file, read once; a checksum-list mismatch is an error."""
    with open_file(ref, md5=True) as fh:
        while fh.read(remote.CHUNK * 8):
            pass
        digests = fh.digests()
    verify_md5(ref, digests.md5)
    return digests


def verify_md5(ref: FileRef, actual: str | None) -> None:
    """Raise when the file's MD5 differs from the one its checksum list gives."""
    if ref.md5 is not None and actual is not None and actual != ref.md5:
        raise BadDataError(
            f"{ref.name} ({ref.location}): md5 {actual} does not match {ref.md5} from the checksum list; "
            "the file is damaged or incomplete: re-download it"
        )
