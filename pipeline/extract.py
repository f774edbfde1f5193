"""Extract stage: one image archive into the store's raw zone.

Layout under the store (``<stem>`` is the archive name without extension, e.g. ``images_001``)::

    raw/shards/<stem>/images/<8-digit>_<3-digit>.png   every sound image, sha256 sent as checksum
    raw/shards/<stem>/manifest.parquet                 one row per image + one per quarantined member
    raw/shards/<stem>/_SUCCESS.json                    written last: archive fingerprint, sha256, counts

The archive is read once, as a stream (see :mod:`pipeline.rangefile`), which also yields its SHA-256
(and MD5, checked against the source's checksum list). Members are checked and uploaded by a pool of
workers, with at most ``2 * workers`` images (and 256 MB) in flight.

Reruns: a shard whose ``_SUCCESS.json`` carries the archive's current fingerprint is skipped. Any other
shard is redone: its marker is removed first (a half-rewritten shard never looks complete), images
already in the store with the same bytes (size and MD5 ETag) are not uploaded again, images no longer
in the archive are removed, and the manifest and marker are written last. Keys are derived from image
names, so a rerun after a crash leaves neither duplicates nor gaps.
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

from pipeline import faults, images, nih, sources
from pipeline.archives import FolderShard, Limits, Member, iter_members
from pipeline.progress import Progress
from pipeline.rangefile import Digests
from pipeline.sources import FileRef, SourceListing
from pipeline.storage import ObjectInfo, Store
from pipeline.workspace import put_json, run_prefix

log = logging.getLogger(__name__)

#: Version of what an extraction writes; a marker of another version makes the shard run again.
LAYOUT = 2
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
    """Store-relative prefix of an archive's raw zone."""
    return f"raw/shards/{shard_stem(name)}"


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
) -> dict[str, Any]:
    return {
        "image_index": image_name(member.path),
        "shard": shard,
        "member": member.path,
        "key": key,
        "size": len(member.data) if member.data is not None else 0,
        "sha256": sha256,
        "mode": info.mode if info else "",
        "width": info.width if info else 0,
        "height": info.height if info else 0,
        "status": status,
        "reason": reason,
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
    """Check one image's PNG structure; return its row and raw SHA-256 (None when quarantined)."""
    data = member.data or b""
    try:
        info = images.check_png(data)
    except images.ImageError as exc:
        return _row(member, shard, status="quarantined", reason=str(exc)), None
    digest = hashlib.sha256(data).digest()
    key = f"{prefix}/images/{image_name(member.path)}"
    return _row(member, shard, key=key, info=info, sha256=digest.hex()), digest


def _put_image(store: Store, key: str, data: bytes, digest: bytes) -> None:
    store.put_bytes(key, data, content_type="image/png", sha256=digest)


def land(
    store: Store, member: Member, shard: str, prefix: str, existing: dict[str, ObjectInfo]
) -> tuple[dict[str, Any], bool]:
    """Check one image and upload it unless the store holds the same bytes; return (row, uploaded)."""
    row, digest = check(member, shard, prefix)
    if digest is None or member.data is None:
        return row, False
    old = existing.get(row["key"])
    if (
        old is not None
        and old.size == len(member.data)
        and old.etag == hashlib.md5(member.data, usedforsecurity=False).hexdigest()
    ):
        return row, False
    _put_image(store, row["key"], member.data, digest)
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


def completed(store: Store, ref: FileRef) -> dict[str, Any] | None:
    """The shard's ``_SUCCESS.json`` when it records this very archive (fingerprint and layout), else None."""
    prefix = shard_prefix(ref.name)
    marker = f"{prefix}/_SUCCESS.json"
    if not store.exists(marker):
        return None
    done: dict[str, Any] = json.loads(store.get_bytes(marker))
    if done.get("fingerprint") != ref.fingerprint or done.get("layout") != LAYOUT:
        return None
    return done if store.exists(f"{prefix}/manifest.parquet") else None


def _stream(
    store: Store, ref: FileRef, existing: dict[str, ObjectInfo], workers: int, limits: Limits | None
) -> tuple[list[dict[str, Any]], int, Digests]:
    lander = _Lander(store, ref, existing, workers)
    seen: set[str] = set()
    try:
        if sources.is_folder(ref):
            folder = FolderShard(ref.location, ref.name, limits)
            for member in folder.members():
                lander.add(member, seen)
            rows, digests = lander.finish(), Digests(ref.size, folder.sha256, None)
        else:
            with sources.open_file(ref, md5=ref.md5 is not None) as fh:
                for member in iter_members(fh, ref.name, limits):
                    lander.add(member, seen)
                rows, digests = lander.finish(), fh.digests()
    finally:
        lander.close()
    return rows, lander.uploaded, digests


def _remove_stale(store: Store, existing: dict[str, ObjectInfo], rows: list[dict[str, Any]]) -> None:
    keep = {row["key"] for row in rows if row["status"] == "ok"}
    stale = sorted(key for key in existing if key not in keep)
    for key in stale:
        store.delete(key)
    if stale:
        log.info("removed %d images no longer in the archive (e.g. %s)", len(stale), stale[0])


def _write_manifest(store: Store, prefix: str, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.put_bytes(f"{prefix}/manifest.parquet", buf.getvalue())


def extract_shard(store: Store, ref: FileRef, upload_workers: int = 16, limits: Limits | None = None) -> ShardResult:
    """Stream one archive into the raw zone, or skip it when its fingerprint is unchanged.

    Raises:
        BadDataError: the archive is not a readable zip or tar, exceeds the limits, or fails its md5 (names the file).
        StoreUnavailableError: the store or the source server could not be reached (a retry may help).
    """
    prefix = shard_prefix(ref.name)
    done = completed(store, ref)
    if done is not None:
        log.info("%s unchanged since its last extraction: skipped", ref.name)
        return ShardResult(
            ref.name,
            prefix,
            done["images"],
            done["quarantined"],
            done["archive_sha256"],
            True,
            0,
            done.get("md5"),
            bool(done.get("md5_verified")),
        )
    store.delete(f"{prefix}/_SUCCESS.json")
    existing = {info.key: info for info in store.list(f"{prefix}/images/")}
    rows, uploaded, digests = _stream(store, ref, existing, upload_workers, limits)
    sources.verify_md5(ref, digests.md5)
    _remove_stale(store, existing, rows)
    _write_manifest(store, prefix, rows)
    ok = sum(1 for row in rows if row["status"] == "ok")
    result = ShardResult(
        ref.name, prefix, ok, len(rows) - ok, digests.sha256, False, uploaded, digests.md5, ref.md5 is not None
    )
    marker = {
        **result.to_dict(),
        "archive": ref.name,
        "location": ref.location,
        "fingerprint": ref.fingerprint,
        "size": ref.size,
        "layout": LAYOUT,
    }
    put_json(store, f"{prefix}/_SUCCESS.json", marker)
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

    Metadata files are hashed here (and their md5 checked); an archive's SHA-256 comes from its raw zone
    when that holds this very archive, else it is null until ``extract_shard`` records it in the
    shard's ``_SUCCESS.json``.
    """
    files: list[dict[str, Any]] = []
    for ref in listing.shards:
        done = completed(store, ref)
        files.append(
            {
                **ref.to_dict(),
                "kind": "archive",
                "sha256": done["archive_sha256"] if done else None,
                "recorded_in": f"{shard_prefix(ref.name)}/_SUCCESS.json",
            }
        )
    for ref in (*listing.metadata_files(), *([listing.checksums] if listing.checksums else [])):
        digests = sources.hash_file(ref)
        files.append({**ref.to_dict(), "kind": "metadata", "sha256": digests.sha256, "md5_actual": digests.md5})
    rel = f"raw/{run_prefix(run_id)}/source_manifest.json"  # beside the raw zone: outlives the run's workspace
    put_json(store, rel, {"source": listing.source, "data_entry": listing.data_entry.name, "files": files})
    return store.uri(rel)
