"""Find the dataset's files in a source location and open them as streams.

A source is where NIH's files are kept as downloaded, one of:

- a local directory;
- an S3 prefix ``s3://bucket/prefix`` (keys and endpoint as for the store; ``CXR_SOURCE_ENDPOINT_URL``
  points at another endpoint);
- an ``http(s)://`` base URL: an index page with links (as ``python -m http.server`` serves a folder)
  is read when there is one, otherwise every known file name is probed with HEAD.

Recognised, at the top level of the source: the image archives ``images_001.zip`` .. ``images_012.zip``
(Kaggle) or ``images_01.tar.gz`` .. ``images_12.tar.gz`` (NIH), Kaggle's ``sample.zip``; the metadata
``Data_Entry_2017_v2020.csv`` (preferred) or ``Data_Entry_2017.csv`` (or Kaggle's ``sample_labels.csv``);
optionally ``BBox_List_2017.csv``, ``train_val_list.txt``, ``test_list.txt`` and an md5 list (a file
whose name contains ``md5`` or ``checksum``, in ``md5sum`` or BSD format), which is used when the run
names none. Every file carries a cheap fingerprint that tells an unchanged file without reading it:

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline import nih
from pipeline.config import source_store_config
from pipeline.curate.metadata import check_size
from pipeline.errors import BadDataError, SourceNotFoundError
from pipeline.ingest import remote, remote_http
from pipeline.ingest.archives import archive_kind
from pipeline.ingest.rangefile import Digests, RangeFile

log = logging.getLogger(__name__)

SAMPLE_ARCHIVE = "sample.zip"
SAMPLE_LABELS = "sample_labels.csv"
DATA_ENTRY_NAMES = (nih.DATA_ENTRY_V2020, nih.DATA_ENTRY_2017, SAMPLE_LABELS)
DATA_ENTRY_ALIASES = {"v2020": nih.DATA_ENTRY_V2020, "2020": nih.DATA_ENTRY_V2020, "2017": nih.DATA_ENTRY_2017}
DATA_ENTRY_ALIASES["sample"] = SAMPLE_LABELS
CHECKSUM_NAMES = ("MD5_checksums.txt", "md5_checksums.txt", "md5sums.txt", "MD5SUMS", "checksums.md5", "checksums.txt")
KNOWN_NAMES = (
    *nih.ZIP_SHARD_NAMES,
    *nih.TAR_SHARD_NAMES,
    SAMPLE_ARCHIVE,
    *DATA_ENTRY_NAMES,
    nih.BBOX_LIST,
    nih.TRAIN_VAL_LIST,
    nih.TEST_LIST,
    *CHECKSUM_NAMES,
)
_SHARD_FOLDER = re.compile(r"^images_[0-9]{2,3}\Z", re.ASCII)
_MD5_LINE = re.compile(r"^(?P<md5>[0-9a-fA-F]{32})\s+\*?(?P<name>.+?)\s*$")
_BSD_LINE = re.compile(r"^MD5\s*\((?P<name>.+)\)\s*=\s*(?P<md5>[0-9a-fA-F]{32})\s*$")
#: Fingerprint kind of a remote file that carries no validator: never taken as unchanged.
NO_FINGERPRINT = "none"


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


@dataclass(frozen=True)
class SourceListing:
    """The dataset files found in a source."""

    source: str
    shards: tuple[FileRef, ...]
    data_entry: FileRef
    bbox: FileRef | None
    train_val: FileRef | None
    test: FileRef | None
    checksums: FileRef | None = None

    def metadata_files(self) -> tuple[FileRef, ...]:
        """The CSV and list files, without the archives."""
        return tuple(f for f in (self.data_entry, self.bbox, self.train_val, self.test) if f is not None)


def shard_number(name: str) -> int | None:
    """1-12 for an archive of either scheme or an unpacked shard folder (``images_001``), else None."""
    number = nih.shard_number(name)
    if number is None and _SHARD_FOLDER.match(name):
        number = int(name.split("_")[1])
    return number


def is_shard_name(name: str) -> bool:
    """True for the archive names of both schemes, Kaggle's ``sample.zip`` and unpacked shard folders."""
    return shard_number(name) is not None or name == SAMPLE_ARCHIVE


def is_folder(ref: FileRef) -> bool:
    """True for a shard that is a local folder of loose files rather than an archive."""
    return ref.fingerprint.startswith("folder:")


def _shard_order(ref: FileRef) -> tuple[int, str]:
    number = shard_number(ref.name)
    return (number if number is not None else 99, ref.name)


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


def _remote_ref(info: remote.RemoteInfo) -> FileRef:
    return FileRef(info.name, info.location, info.size, _remote_fingerprint(info), info.validator)


def _stat_fingerprint(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}:{stat.st_dev}"


def _local_ref(path: Path) -> FileRef:
    stat = path.stat()
    return FileRef(path.name, str(path.resolve()), stat.st_size, f"file:{_stat_fingerprint(stat)}")


def refreshed(ref: FileRef) -> FileRef:
    """A local file or folder as it is now (fingerprint and size taken again); a remote one unchanged.

    Raises:
        SourceNotFoundError: the local file or folder is gone.
    """
    if remote.is_s3(ref.location) or remote.is_http(ref.location):
        return ref
    path = Path(ref.location)
    try:
        fresh = _folder_ref(path) if is_folder(ref) else _local_ref(path)
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"{ref.location} disappeared from the source while this run used it") from exc
    return replace(ref, size=fresh.size, fingerprint=fresh.fingerprint)


def is_local(ref: FileRef) -> bool:
    """True for a file or folder on a local disk."""
    return not (remote.is_s3(ref.location) or remote.is_http(ref.location))


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


def _resolved(source: str) -> str:
    """The absolute path of a local source; a loop of symbolic links is refused by name."""
    try:
        return str(Path(source).resolve())
    except (OSError, RuntimeError) as exc:  # Python 3.11 raises RuntimeError("Symlink loop from ...")
        raise SourceNotFoundError(
            f"source {source} cannot be resolved ({exc}): it is a loop of symbolic links or cannot be read; point "
            "--source at the directory that holds the files"
        ) from exc


def _list_local(source: str) -> dict[str, FileRef]:
    root = Path(source)
    if not root.is_dir():
        raise SourceNotFoundError(f"source directory {source} does not exist")
    files = {p.name: _local_ref(p) for p in root.iterdir() if p.is_file() and not p.name.startswith(".")}
    folders = {p.name: _folder_ref(p) for p in root.iterdir() if p.is_dir() and _SHARD_FOLDER.match(p.name)}
    return {**folders, **files}


def _folder_ref(path: Path) -> FileRef:
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


def _list_http(source: str) -> dict[str, FileRef]:
    base = source if source.endswith("/") else source + "/"
    linked = [n for n in remote_http.http_index(base) if n in KNOWN_NAMES or _is_checksum_name(n)]
    names = linked or list(KNOWN_NAMES)
    with ThreadPoolExecutor(8, thread_name_prefix="probe") as pool:
        found = pool.map(remote_http.http_head, [base + name for name in names])
        return {ref.name: ref for ref in (_remote_ref(info) for info in found if info is not None)}


def list_source(source: str) -> dict[str, FileRef]:
    """Every file at the top level of a source, by name."""
    if remote.is_s3(source):
        return {info.name: _remote_ref(info) for info in remote.s3_list(source)}
    if remote.is_http(source):
        return _list_http(source)
    return _list_local(source)


def _find_shards(files: dict[str, FileRef], where: str, only: tuple[str, ...] | None) -> tuple[FileRef, ...]:
    found = sorted((ref for name, ref in files.items() if is_shard_name(name)), key=_shard_order)
    if only is not None:
        keys = {ref.name: {ref.name, _stem(ref.name), str(shard_number(ref.name) or "")} for ref in found}
        wanted = {str(int(s)) if str(s).isascii() and str(s).isdigit() else str(s) for s in only}
        found = [ref for ref in found if keys[ref.name] & wanted]
        missing = wanted - set().union(*keys.values())
        if missing:
            raise SourceNotFoundError(f"shards {sorted(missing)} asked for but not found in {where}")
    numbers = [shard_number(ref.name) for ref in found]
    twice = sorted({n for n in numbers if n is not None and numbers.count(n) > 1})
    if twice:
        raise BadDataError(
            f"shards {twice} are present in more than one form (images_00N.zip, images_0N.tar.gz, unpacked "
            f"images_00N/) in {where}; they hold the same images: keep one, or pick archives with --shards"
        )
    return tuple(found)


def _stem(name: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _data_entry(files: dict[str, FileRef], where: str, prefer: str | None) -> FileRef:
    if prefer:
        name = DATA_ENTRY_ALIASES.get(prefer.lower(), prefer)
        if name in files:
            return files[name]
        present = [n for n in DATA_ENTRY_NAMES if n in files] or ["none"]
        raise SourceNotFoundError(
            f"metadata file {name} (chosen with --data-entry) not found in {where}; present: {', '.join(present)}"
        )
    for name in DATA_ENTRY_NAMES:
        if name in files:
            if name == nih.DATA_ENTRY_V2020 and nih.DATA_ENTRY_2017 in files:
                log.info("both label versions in %s: using %s (--data-entry 2017 picks the other)", where, name)
            return files[name]
    raise SourceNotFoundError(
        f"metadata file {nih.DATA_ENTRY_V2020} or {nih.DATA_ENTRY_2017} not found in {where} (nor Kaggle's "
        f"{SAMPLE_LABELS}); download it from the NIH dataset page and place it beside the image archives"
    )


def _is_checksum_name(name: str) -> bool:
    lower = name.lower()
    return ("md5" in lower or "checksum" in lower) and archive_kind(name) is None


def parse_md5_list(text: str) -> dict[str, str]:
    """``{file name: md5}`` from ``md5sum`` lines (``<md5>  <name>``) or BSD lines (``MD5 (<name>) = <md5>``)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = _MD5_LINE.match(line.strip()) or _BSD_LINE.match(line.strip())
        if match:
            sums[match["name"].replace("\\", "/").rsplit("/", 1)[-1]] = match["md5"].lower()
    return sums


def _ref_at(location: str) -> FileRef:
    """A FileRef for a file named by its own path or URI (the checksum list given with --checksums)."""
    if remote.is_s3(location) or remote.is_http(location):
        info = remote.s3_head(location) if remote.is_s3(location) else remote_http.http_head(location)
        if info is None:
            raise SourceNotFoundError(f"checksum list {location} not found")
        return _remote_ref(info)
    path = Path(location)
    if not path.is_file():
        raise SourceNotFoundError(f"checksum list {location} not found")
    return _local_ref(path)


def _checksums(files: dict[str, FileRef], where: str, given: str | None) -> tuple[FileRef | None, dict[str, str]]:
    if given:
        ref = files.get(given) or _ref_at(given)
        sums = parse_md5_list(read_file(ref, "checksums").decode("utf-8", "replace"))
        if not sums:
            raise BadDataError(f"checksum list {ref.location} holds no '<md5>  <file name>' lines")
        return ref, sums
    for name in sorted(n for n in files if _is_checksum_name(n)):
        sums = parse_md5_list(read_file(files[name], "checksums").decode("utf-8", "replace"))
        if sums:
            log.info("verifying md5 sums from %s (found in %s)", name, where)
            return files[name], sums
        log.warning("%s in %s looks like a checksum list but holds no md5 lines: ignored", name, where)
    return None, {}


def _with_md5(ref: FileRef | None, sums: dict[str, str]) -> FileRef | None:
    return replace(ref, md5=sums[ref.name]) if ref is not None and ref.name in sums else ref


def discover(
    source: str, shards: tuple[str, ...] | None = None, data_entry: str | None = None, checksums: str | None = None
) -> SourceListing:
    """List the dataset files in a source.

    Args:
        source: a local directory, ``s3://bucket/prefix`` or an ``http(s)://`` base URL.
        shards: restrict to these archives (``"3"``, ``"images_003.zip"``, ``"images_003"``, ``"sample"``).
        data_entry: the metadata file when several are present (a file name, ``2017``, ``v2020``, ``sample``).
        checksums: an md5 list (a path, URI, or the name of a file in the source); by default one found
            in the source is used.

    Raises:
        SourceNotFoundError: the source, the metadata CSV, every archive, or a named file is missing.
        BadDataError: one shard is present in two forms, or the checksum list is unreadable.
    """
    where = source.rstrip("/") if remote.is_s3(source) or remote.is_http(source) else _resolved(source)
    files = list_source(source)
    found = _find_shards(files, where, shards)
    if not found:
        raise SourceNotFoundError(
            f"no image archives (images_001.zip .. images_012.zip, images_01.tar.gz .. images_12.tar.gz or "
            f"{SAMPLE_ARCHIVE}) found in {where}"
        )
    sums_ref, sums = _checksums(files, where, checksums)
    unlisted = [ref.name for ref in found if sums and ref.name not in sums]
    if unlisted:
        log.warning("%s not in the checksum list %s: not verified", ", ".join(unlisted), sums_ref and sums_ref.name)
    entry = _with_md5(_data_entry(files, where, data_entry), sums)
    assert entry is not None
    listing = SourceListing(
        source=where,
        shards=tuple(ref for ref in (_with_md5(r, sums) for r in found) if ref is not None),
        data_entry=entry,
        bbox=_with_md5(files.get(nih.BBOX_LIST), sums),
        train_val=_with_md5(files.get(nih.TRAIN_VAL_LIST), sums),
        test=_with_md5(files.get(nih.TEST_LIST), sums),
        checksums=sums_ref,
    )
    # a metadata file over its size limit fails the run here, before anything is read
    kinds: list[tuple[FileRef | None, str]] = [(entry, "data_entry"), (listing.bbox, "bbox")]
    for ref, kind in [*kinds, (listing.train_val, "split_list"), (listing.test, "split_list")]:
        if ref is not None:
            check_size(ref.location, ref.size, kind)
    log.info("source %s: %d archives, metadata %s", where, len(found), listing.data_entry.name)
    return listing


def open_file(ref: FileRef, *, md5: bool = False, prefetch: bool = True) -> RangeFile:
    """Open a source file as a seekable stream that hashes what it reads (see :class:`RangeFile`)."""
    return RangeFile(open_ranges(ref.location, ref.size, ref.validator), md5=md5, prefetch=prefetch)


def open_ranges(location: str, size: int, validator: str) -> remote.RangeSource:
    """A :class:`~pipeline.ingest.remote.RangeSource` for a local path, an ``s3://`` URI or an ``http(s)://`` URL."""
    if remote.is_s3(location):
        return remote.S3Ranges(location, size, validator)
    if remote.is_http(location):
        if remote_http.supports_ranges(location):
            return remote_http.HttpRanges(location, size, validator)
        return remote_http.spool_http(remote.RemoteInfo(location.rsplit("/", 1)[-1], location, size, validator))
    return remote.LocalRanges(location)


def read_file(ref: FileRef, kind: str | None = None) -> bytes:
    """Read a (small) source file whole; with ``kind`` (a key of ``metadata.MAX_FILE_BYTES``) one over its kind's
    size limit is refused before it is read (:func:`pipeline.curate.metadata.check_size`)."""
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
