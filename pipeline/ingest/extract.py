"""Extract stage: one image archive into the store's raw zone.

Layout under the store (``<stem>`` is the archive name without extension, e.g. ``images_001``)::

    raw/shards/<stem>/images/<image sha256>/<NNNNNNNN_NNN>.png  every sound image, keyed by its bytes' sha256
    raw/shards/<stem>/archives/<sha256>/manifest.parquet        one row per member of that very archive
    raw/shards/<stem>/archives/<sha256>/_SUCCESS.json           written last: sha256, md5, counts, layout
    raw/shards/<stem>/seen/<identity>.json                      location + fingerprint -> archive sha256

The raw zone is shared by every run on the store, whatever its source: nothing in it is ever changed or
deleted by a run. Image objects are content-addressed (:func:`raw_image_key`), so a key always holds the
bytes its name says, and an archive's manifest and marker sit under the archive's own SHA-256 (for an
unpacked folder, the digest of its files: :func:`folder_sha256`), so a plan that reads the manifests of
the SHA-256s its run extracted (:func:`pipeline.plan.planning.load_raw_images`) can never pick up another
archive's bytes, and two runs from different sources into one store never disturb each other. Objects
no archive uses any more stay until a clean-up removes them.

The archive is read once, as a stream (see :mod:`pipeline.ingest.rangefile`), which also yields its SHA-256
(and MD5, checked against the source's checksum list). Members are checked and uploaded by a pool of
workers, with at most ``2 * workers`` images (and 256 MB) in flight.

Reruns: an archive is unchanged only by content. ``seen/<identity>.json`` (the identity is a hash of the
file's location and fingerprint: :func:`pipeline.ingest.sources.content_identity`) names the SHA-256 found
there last time; when that archive's marker exists the archive is skipped without being read. A local
archive or folder with a fingerprint not seen before, in a raw zone that holds other versions of its
shard, is hashed first, and skipped when its SHA-256 is already extracted (a copied, moved or touched
mirror). Anything else is streamed: images already in the store (same key and size and MD5 ETag) are
not uploaded again, the manifest and marker are written last, and a local file whose SHA-256 or
fingerprint changed while it was read fails with a clear error. A rerun after a crash leaves neither
duplicates nor gaps.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import faults, nih
from pipeline import png as images
from pipeline.errors import BadDataError
from pipeline.ingest import sources
from pipeline.ingest.archives import FolderShard, Limits, Member, iter_members
from pipeline.ingest.rangefile import Digests
from pipeline.ingest.sources import FileRef, SourceListing
from pipeline.progress import Progress
from pipeline.store.storage import ObjectInfo, Store
from pipeline.store.workspace import put_json, run_prefix

log = logging.getLogger(__name__)

#: Version of what an extraction writes and decides: a marker of another version makes the archive run
#: again. Bump it whenever the same archive bytes would give other rows or other image bytes.
LAYOUT = 3
MAX_IN_FLIGHT_BYTES = 256 << 20

MANIFEST_SCHEMA = pa.schema(
    [
        ("image_index", pa.string()),
        ("shard", pa.string()),
        ("member", pa.string()),
        ("key", pa.string()),
        ("size", pa.int64()),
        ("sha256", pa.string()),
        ("mode", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("repaired", pa.string()),  # what was cut from a landed image (bytes after IEND), else null
    ]
)


@dataclass(frozen=True)
class ShardResult:
    """What extracting one archive produced (small: goes through XCom)."""

    shard: str
    prefix: str
    images: int
    quarantined: int
    archive_sha256: str
    skipped: bool
    uploaded: int = 0
    md5: str | None = None
    md5_verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


def shard_stem(name: str) -> str:
    """``images_001.zip`` -> ``images_001``."""
    for ext in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def shard_prefix(name: str) -> str:
    """Store-relative prefix of a shard's raw zone (every version of the archive of that name)."""
    return f"raw/shards/{shard_stem(name)}"


def archive_prefix(name: str, archive_sha256: str) -> str:
    """Where the manifest and marker of one archive's content are kept."""
    return f"{shard_prefix(name)}/archives/{archive_sha256}"


def raw_image_key(prefix: str, name: str, digest: bytes) -> str:
    """The key of an image under a shard's ``prefix``: named by the SHA-256 of the bytes stored there."""
    return f"{prefix}/images/{digest.hex()}/{name}"


def seen_key(ref: FileRef) -> str | None:
    """Where the archive found at ``ref``'s location and fingerprint is remembered (None: no fingerprint)."""
    identity = sources.content_identity(ref)
    return None if identity is None else f"{shard_prefix(ref.name)}/seen/{identity}.json"


def folder_sha256(files_digest: str, unread: list[tuple[str, str]]) -> str:
    """The identity of an unpacked folder: its files' digest (``FolderShard.sha256``) and every entry that
    was not read (links, special or oversized files, with their reasons), which also make manifest rows."""
    material = "folder\0" + files_digest + "".join(f"\0{path}\0{problem}" for path, problem in sorted(unread))
    return hashlib.sha256(material.encode()).hexdigest()


def image_name(member_path: str) -> str:
    """The file name of a member path, whatever its depth or separator (``a\\b/00000001_000.png``)."""
    return PurePosixPath(member_path.replace("\\", "/")).name


def _row(
    member: Member,
    shard: str,
    *,
    key: str = "",
    status: str = "ok",
    reason: str = "",
    info: images.PngInfo | None = None,
    sha256: str = "",
    size: int | None = None,
    repaired: str | None = None,
) -> dict[str, Any]:
    return {
        "image_index": image_name(member.path),
        "shard": shard,
        "member": member.path,
        "key": key,
        "size": size if size is not None else len(member.data) if member.data is not None else 0,
        "sha256": sha256,
        "mode": info.mode if info else "",
        "width": info.width if info else 0,
        "height": info.height if info else 0,
        "status": status,
        "reason": reason,
        "repaired": repaired,
    }


def screen(member: Member, shard: str, seen: set[str]) -> dict[str, Any] | None:
    """The row of a member that will not land (unsafe, unreadable, not an image name, a repeat), else None."""
    if member.problem or member.data is None:
        return _row(member, shard, status="quarantined", reason=member.problem or "unreadable member")
    name = image_name(member.path)
    if not nih.IMAGE_NAME_RE.match(name):
        return _row(member, shard, status="skipped", reason="name is not NNNNNNNN_NNN.png")
    if name in seen:
        return _row(member, shard, status="quarantined", reason="same image name twice in this archive")
    seen.add(name)
    return None


def check(member: Member, shard: str, prefix: str) -> tuple[dict[str, Any], bytes | None]:
    """Check one image's PNG structure; return its row and the SHA-256 of the bytes to store (None when quarantined).

    What is stored is the PNG up to and including IEND: the member's first ``row["size"]`` bytes. Bytes after
    IEND are cut, and the row's ``repaired`` says so; ``size`` and ``sha256`` are those of what is stored.
    """
    try:
        info = images.check_png(member.data or b"")
    except images.ImageError as exc:
        return _row(member, shard, status="quarantined", reason=str(exc)), None
    data, repaired = images.strip_trailing(member.data or b"", info)
    digest = hashlib.sha256(data).digest()
    key = raw_image_key(prefix, image_name(member.path), digest)
    row = _row(member, shard, key=key, info=info, sha256=digest.hex(), size=len(data), repaired=repaired)
    return row, digest


def _put_image(store: Store, key: str, data: bytes, digest: bytes) -> None:
    store.put_bytes(key, data, content_type="image/png", sha256=digest)


def land(
    store: Store, member: Member, shard: str, prefix: str, existing: dict[str, ObjectInfo]
) -> tuple[dict[str, Any], bool]:
    """Check one image and upload it unless the store holds the same bytes; return (row, uploaded)."""
    row, digest = check(member, shard, prefix)
    if digest is None or member.data is None:
        return row, False
    data = member.data[: row["size"]]  # what check() hashed: the PNG through IEND (the same object when whole)
    old = existing.get(row["key"])
    if old is not None and old.size == len(data) and old.etag == hashlib.md5(data, usedforsecurity=False).hexdigest():
        return row, False
    _put_image(store, row["key"], data, digest)
    return row, True


class _Lander:
    """Runs :func:`land` in a pool; rows come back in archive order; bounded items and bytes in flight."""

    def __init__(self, store: Store, ref: FileRef, existing: dict[str, ObjectInfo], workers: int) -> None:
        self.store, self.shard, self.prefix, self.existing = store, ref.name, shard_prefix(ref.name), existing
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="land")
        self.pending: deque[tuple[Future[tuple[dict[str, Any], bool]], int]] = deque()
        self.max_items, self.in_flight = max(2, 2 * workers), 0
        self.rows: list[dict[str, Any]] = []
        self.uploaded = 0
        self.progress = Progress(f"extract {ref.name}", None, log)

    def add(self, member: Member, seen: set[str]) -> None:
        row = screen(member, self.shard, seen)
        size = len(member.data) if row is None and member.data is not None else 0
        while self.pending and (len(self.pending) >= self.max_items or self.in_flight + size > MAX_IN_FLIGHT_BYTES):
            self._collect()
        future: Future[tuple[dict[str, Any], bool]]
        if row is not None:
            future = Future()
            future.set_result((row, False))
        else:
            future = self.pool.submit(land, self.store, member, self.shard, self.prefix, self.existing)
        self.pending.append((future, size))
        self.in_flight += size

    def _collect(self) -> None:
        future, size = self.pending.popleft()
        row, uploaded = future.result()
        self.in_flight -= size
        self.rows.append(row)
        self.uploaded += uploaded
        self.progress.advance()
        faults.point("extract.member")

    def finish(self) -> list[dict[str, Any]]:
        while self.pending:
            self._collect()
        self.progress.finish()
        return self.rows

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def completed(store: Store, archive_sha256: str, name: str) -> dict[str, Any] | None:
    """The ``_SUCCESS.json`` of this archive content (its manifest present, this layout), else None."""
    prefix = archive_prefix(name, archive_sha256)
    marker = f"{prefix}/_SUCCESS.json"
    if not store.exists(marker):
        return None
    done: dict[str, Any] = json.loads(store.get_bytes(marker))
    if done.get("layout") != LAYOUT or done.get("archive_sha256") != archive_sha256:
        return None
    return done if store.exists(f"{prefix}/manifest.parquet") else None


def known(store: Store, ref: FileRef) -> dict[str, Any] | None:
    """The marker of the archive last found at ``ref``'s location with ``ref``'s fingerprint, when that
    archive's extraction is complete; None when the fingerprint is new (or gives no identity)."""
    key = seen_key(ref)
    if key is None or not store.exists(key):
        return None
    seen: dict[str, Any] = json.loads(store.get_bytes(key))
    if seen.get("layout") != LAYOUT or not seen.get("archive_sha256"):
        return None
    return completed(store, str(seen["archive_sha256"]), ref.name)


def _remember(store: Store, ref: FileRef, archive_sha256: str) -> None:
    key = seen_key(ref)
    if key is not None:
        record = {"archive_sha256": archive_sha256, "layout": LAYOUT}
        put_json(store, key, {**record, "archive": ref.name, "location": ref.location, "fingerprint": ref.fingerprint})


def _extracted_versions(store: Store, name: str) -> set[str]:
    """SHA-256s of the archives of this shard name that have a marker in the raw zone."""
    prefix = f"{shard_prefix(name)}/archives/"
    found = (info.key.removeprefix(prefix) for info in store.list(prefix))
    return {key.split("/", 1)[0] for key in found if key.endswith("/_SUCCESS.json")}


def _skipped(ref: FileRef, done: dict[str, Any], md5: str | None = None) -> ShardResult:
    sha = str(done["archive_sha256"])
    return ShardResult(
        ref.name,
        archive_prefix(ref.name, sha),
        int(done["images"]),
        int(done["quarantined"]),
        sha,
        True,
        0,
        md5 or done.get("md5"),
        ref.md5 is not None,
    )


def _md5_known(ref: FileRef, done: dict[str, Any]) -> bool:
    """Whether a skipped archive's MD5 is known to match the checksum list (raises when it does not)."""
    if ref.md5 is None:
        return True
    if done.get("md5") is None:
        return False  # extracted without a checksum list: read it again to check this one
    sources.verify_md5(ref, str(done["md5"]))
    return True


def _prehash(ref: FileRef, limits: Limits | None) -> Digests:
    """SHA-256 (and MD5, checked against the list) of a local archive, or a folder's identity."""
    log.info("%s: fingerprint not seen before; hashing it to look for an extraction of the same bytes", ref.name)
    if not sources.is_folder(ref):
        return sources.hash_file(ref)
    folder = FolderShard(ref.location, ref.name, limits)
    unread = [(member.path, member.problem or "") for member in folder.members() if member.data is None]
    return Digests(ref.size, folder_sha256(folder.sha256, unread), None)


def _stream(
    store: Store, ref: FileRef, existing: dict[str, ObjectInfo], workers: int, limits: Limits | None
) -> tuple[list[dict[str, Any]], int, Digests]:
    lander = _Lander(store, ref, existing, workers)
    seen: set[str] = set()
    try:
        if sources.is_folder(ref):
            folder = FolderShard(ref.location, ref.name, limits)
            unread: list[tuple[str, str]] = []
            for member in folder.members():
                if member.data is None:
                    unread.append((member.path, member.problem or ""))
                lander.add(member, seen)
            rows, digests = lander.finish(), Digests(ref.size, folder_sha256(folder.sha256, unread), None)
        else:
            with sources.open_file(ref, md5=ref.md5 is not None) as fh:
                for member in iter_members(fh, ref.name, limits):
                    lander.add(member, seen)
                rows, digests = lander.finish(), fh.digests()
    finally:
        lander.close()
    return rows, lander.uploaded, digests


def _check_unchanged_while_read(ref: FileRef, before: Digests | None, read: Digests) -> None:
    """A local file must hash as it did before extraction and keep its fingerprint to the end."""
    if before is not None and before.sha256 != read.sha256:
        raise BadDataError(
            f"{ref.location} changed while this run read it (sha256 {before.sha256} when hashed, {read.sha256} "
            "when extracted); nothing was recorded for it: rerun once the file is no longer being written"
        )
    if sources.is_local(ref) and sources.refreshed(ref).fingerprint != ref.fingerprint:
        raise BadDataError(
            f"{ref.location} changed while this run read it (its size, times or inode differ from when "
            "extraction started); nothing was recorded for it: rerun once the file is no longer being written"
        )


def _write_manifest(store: Store, prefix: str, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.put_bytes(f"{prefix}/manifest.parquet", buf.getvalue())


def extract_shard(store: Store, ref: FileRef, upload_workers: int = 16, limits: Limits | None = None) -> ShardResult:
    """Stream one archive into the raw zone, or skip it when its content is extracted already.

    Raises:
        BadDataError: the archive is not a readable zip or tar, exceeds the limits, fails its md5, or changed
            while it was read (names the file).
        StoreUnavailableError: the store or the source server could not be reached (a retry may help).
    """
    ref = sources.refreshed(ref)  # a local file as it is now, not as discovery saw it
    done = known(store, ref)
    if done is not None and _md5_known(ref, done):
        log.info("%s unchanged since its last extraction: skipped", ref.name)
        return _skipped(ref, done)
    before: Digests | None = None
    if sources.is_local(ref) and _extracted_versions(store, ref.name):
        before = _prehash(ref, limits)
        done = completed(store, before.sha256, ref.name)
        if done is not None:
            _check_unchanged_while_read(ref, None, before)
            _remember(store, ref, before.sha256)
            log.info("%s unchanged since its last extraction: skipped (same sha256, new fingerprint)", ref.name)
            return _skipped(ref, done, before.md5)
    existing = {info.key: info for info in store.list(f"{shard_prefix(ref.name)}/images/")}
    rows, uploaded, digests = _stream(store, ref, existing, upload_workers, limits)
    sources.verify_md5(ref, digests.md5)
    _check_unchanged_while_read(ref, before, digests)
    md5 = digests.md5 or (before.md5 if before else None)
    prefix = archive_prefix(ref.name, digests.sha256)
    ok = sum(1 for row in rows if row["status"] == "ok")
    verified = ref.md5 is not None
    result = ShardResult(ref.name, prefix, ok, len(rows) - ok, digests.sha256, False, uploaded, md5, verified)
    if completed(store, digests.sha256, ref.name) is None:  # else a run beside this one wrote the same
        _write_manifest(store, prefix, rows)
        marker = {**result.to_dict(), "archive": ref.name, "location": ref.location, "layout": LAYOUT}
        put_json(store, f"{prefix}/_SUCCESS.json", {**marker, "fingerprint": ref.fingerprint, "size": ref.size})
    _remember(store, ref, digests.sha256)
    log.info(
        "%s: %d images landed (%d uploaded, %d already there), %d quarantined or skipped",
        ref.name,
        ok,
        uploaded,
        ok - uploaded,
        len(rows) - ok,
    )
    if ok == 0:
        log.warning("%s holds no image that could land; see %s/manifest.parquet", ref.name, prefix)
    return result


def record_sources(store: Store, listing: SourceListing, run_id: str) -> str:
    """Write ``raw/runs/<run>/source_manifest.json``: every source file with size, fingerprint and hashes.

    Metadata files are hashed here (and their md5 checked); an archive's SHA-256 comes from the raw zone
    when its location and fingerprint were seen before, else it is null until ``extract_shard`` records
    it (``recorded_in``; the release manifest names the SHA-256s the run really used).
    """
    files: list[dict[str, Any]] = []
    for ref in listing.shards:
        done = known(store, ref)
        sha = str(done["archive_sha256"]) if done else None
        where = f"{archive_prefix(ref.name, sha)}/_SUCCESS.json" if sha else seen_key(ref)
        files.append({**ref.to_dict(), "kind": "archive", "sha256": sha, "recorded_in": where})
    for ref in (*listing.metadata_files(), *([listing.checksums] if listing.checksums else [])):
        digests = sources.hash_file(ref)
        files.append({**ref.to_dict(), "kind": "metadata", "sha256": digests.sha256, "md5_actual": digests.md5})
    rel = f"raw/{run_prefix(run_id)}/source_manifest.json"  # beside the raw zone: outlives the run's workspace
    put_json(store, rel, {"source": listing.source, "data_entry": listing.data_entry.name, "files": files})
    return store.uri(rel)
