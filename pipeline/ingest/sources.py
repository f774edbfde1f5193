"""Find the dataset's files in a source location (reading them: :mod:`pipeline.ingest.files`).

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
names none.

Each file found is a :class:`~pipeline.ingest.files.FileRef` with a cheap fingerprint (:mod:`pipeline.ingest.files`
says what it covers for each kind of source); :func:`discover` attaches the md5 of the checksum list to each, and
refuses a metadata file over its size limit before anything is read.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline import nih
from pipeline.errors import BadDataError, SourceNotFoundError
from pipeline.ingest import remote, remote_http
from pipeline.ingest.files import FileRef, check_size, folder_ref, local_ref, read_file, remote_ref

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
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
#: A generic annotation layer's JSON spec sits beside its CSV: ``relabels.csv.layer.json`` or ``relabels.layer.json``.
LAYER_SPEC_SUFFIX = ".layer.json"


@dataclass(frozen=True)
class AnnotationRef:
    """An annotation layer of a run (``--annotations ID=LOCATION``): its id, its file(s) and the spec beside them."""

    id: str
    files: tuple[FileRef, ...]
    spec: FileRef | None = None


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
    annotations: tuple[AnnotationRef, ...] = ()

    def annotation_files(self) -> tuple[FileRef, ...]:
        """Every annotation layer's files and specs."""
        return tuple(f for a in self.annotations for f in (*a.files, *([a.spec] if a.spec else [])))

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


def shard_stem(name: str) -> str:
    """``images_001.zip`` -> ``images_001`` (an archive name without its extension; other names unchanged)."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def archive_kind(name: str) -> str | None:
    """``zip`` or ``tar`` from an archive's name, None for other names."""
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    return None


def _shard_order(ref: FileRef) -> tuple[int, str]:
    number = shard_number(ref.name)
    return (number if number is not None else 99, ref.name)


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
    if root.exists() and not root.is_dir():
        raise SourceNotFoundError(
            f"source {source} is a file, not a directory: point --source at the directory that holds the archives "
            "and metadata files"
        )
    if not root.is_dir():
        raise SourceNotFoundError(f"source directory {source} does not exist")
    files = {p.name: local_ref(p) for p in root.iterdir() if p.is_file() and not p.name.startswith(".")}
    folders = {p.name: folder_ref(p) for p in root.iterdir() if p.is_dir() and _SHARD_FOLDER.match(p.name)}
    return {**folders, **files}


def _list_http(source: str) -> dict[str, FileRef]:
    base = source if source.endswith("/") else source + "/"
    linked = [n for n in remote_http.http_index(base) if n in KNOWN_NAMES or _is_checksum_name(n)]
    names = linked or list(KNOWN_NAMES)
    with ThreadPoolExecutor(8, thread_name_prefix="probe") as pool:
        found = pool.map(remote_http.http_head, [base + name for name in names])
        return {ref.name: ref for ref in (remote_ref(info) for info in found if info is not None)}


def list_source(source: str) -> dict[str, FileRef]:
    """Every file at the top level of a source, by name."""
    if remote.is_s3(source):
        return {info.name: remote_ref(info) for info in remote.s3_list(source)}
    if remote.is_http(source):
        return _list_http(source)
    return _list_local(source)


def _find_shards(files: dict[str, FileRef], where: str, only: tuple[str, ...] | None) -> tuple[FileRef, ...]:
    found = sorted((ref for name, ref in files.items() if is_shard_name(name)), key=_shard_order)
    if only is not None:
        keys = {ref.name: {ref.name, shard_stem(ref.name), str(shard_number(ref.name) or "")} for ref in found}
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


def _find_at(location: str) -> FileRef | None:
    """A FileRef for a file named by its own path or URI; None when there is no such file."""
    if remote.is_s3(location) or remote.is_http(location):
        info = remote.s3_head(location) if remote.is_s3(location) else remote_http.http_head(location)
        return remote_ref(info) if info is not None else None
    path = Path(location)
    return local_ref(path) if path.is_file() else None


def _ref_at(location: str, what: str = "checksum list") -> FileRef:
    """A FileRef for a file named by its own path or URI (the checksum list given with --checksums)."""
    ref = _find_at(location)
    if ref is None:
        raise SourceNotFoundError(f"{what} {location} not found")
    return ref


def spec_names(name: str) -> tuple[str, ...]:
    """The names a layer file's spec may have beside it: ``<name>.layer.json``, then ``<stem>.layer.json``."""
    stem = name[: -len(".csv")] if name.lower().endswith(".csv") else name
    return tuple(dict.fromkeys((name + LAYER_SPEC_SUFFIX, stem + LAYER_SPEC_SUFFIX)))


def _spec_beside(ref: FileRef, files: dict[str, FileRef], in_source: bool) -> FileRef | None:
    for candidate in spec_names(ref.name):
        if in_source:
            if candidate in files:
                return files[candidate]
            continue
        found = _find_at(ref.location[: len(ref.location) - len(ref.name)] + candidate)
        if found is not None:
            return found
    return None


def _annotations(files: dict[str, FileRef], where: str, given: dict[str, tuple[str, ...]]) -> tuple[AnnotationRef, ...]:
    """Find each layer's files (a name in the source, a path or a URI) and the spec beside them.

    Raises:
        SourceNotFoundError: a layer file is not found (the message says where it was looked for).
        BadDataError: the files of one layer have different specs beside them.
    """
    layers = []
    for layer_id, locations in given.items():
        refs, specs = [], []
        for location in locations:
            in_source = location in files
            ref = files[location] if in_source else _find_at(location)
            if ref is None:
                raise SourceNotFoundError(
                    f"annotation layer {layer_id!r}: {location} is neither a file in {where} nor a path or URI of "
                    "a file; give the file's name in the source, its path or its URI"
                )
            check_size(ref.location, ref.size, "annotation")
            refs.append(ref)
            specs.append(_spec_beside(ref, files, in_source))
        found = {s.location: s for s in specs if s is not None}
        if len(found) > 1:
            raise BadDataError(
                f"annotation layer {layer_id!r}: its files have different specs beside them ({', '.join(found)}); "
                "one layer has one spec: keep one, or give the files as separate layers"
            )
        spec = next(iter(found.values()), None)
        if spec is not None:
            check_size(spec.location, spec.size, "layer_spec")
        layers.append(AnnotationRef(layer_id, tuple(refs), spec))
    return tuple(layers)


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
    source: str,
    shards: tuple[str, ...] | None = None,
    data_entry: str | None = None,
    checksums: str | None = None,
    annotations: dict[str, tuple[str, ...]] | None = None,
) -> SourceListing:
    """List the dataset files in a source.

    Args:
        source: a local directory, ``s3://bucket/prefix`` or an ``http(s)://`` base URL.
        shards: restrict to these archives (``"3"``, ``"images_003.zip"``, ``"images_003"``, ``"sample"``).
        data_entry: the metadata file when several are present (a file name, ``2017``, ``v2020``, ``sample``).
        checksums: an md5 list (a path, URI, or the name of a file in the source); by default one found
            in the source is used.
        annotations: annotation layers, ``{id: (location, ...)}`` (:func:`pipeline.layers.schema.parse_annotations`);
            each location a file name in the source, a path or a URI, a spec looked for beside each file.

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
        annotations=_annotations(files, where, annotations or {}),
    )
    # a metadata file over its size limit fails the run here, before anything is read
    kinds: list[tuple[FileRef | None, str]] = [(entry, "data_entry"), (listing.bbox, "bbox")]
    for ref, kind in [*kinds, (listing.train_val, "split_list"), (listing.test, "split_list")]:
        if ref is not None:
            check_size(ref.location, ref.size, kind)
    log.info("source %s: %d archives, metadata %s", where, len(found), listing.data_entry.name)
    return listing
