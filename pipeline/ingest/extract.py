"""Extract stage: land one image archive (or unpacked shard folder) in the store's raw zone.

What the raw zone holds and how an extraction is recorded is :mod:`pipeline.ingest.rawzone`; this module reads
the archive and lands its images.

The archive is read once, as a stream (see :mod:`pipeline.ingest.rangefile`), which also yields its SHA-256
(and MD5, checked against the source's checksum list). Members are checked and uploaded by a pool of
workers, with at most ``2 * workers`` images (and 256 MB) in flight.

Reruns: an archive is unchanged only by content. When the seen index names an archive already extracted
for the file's location and fingerprint (:func:`pipeline.ingest.rawzone.known`), the archive is skipped
without being read. A local archive or folder with a fingerprint not seen before, in a raw zone that holds
other versions of its shard, is hashed first, and skipped when its SHA-256 is already extracted (a copied,
moved or touched mirror). Anything else is streamed: images already in the store (same key and size and MD5
ETag) are not uploaded again, the manifest and marker are written last, and a local file whose SHA-256 or
fingerprint changed while it was read fails with a clear error. A rerun after a crash leaves neither
duplicates nor gaps.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

from pipeline import faults, nih
from pipeline import png as images
from pipeline.errors import BadDataError, ImageError
from pipeline.ingest import files
from pipeline.ingest.archives import FolderShard, Limits, Member, Readable
from pipeline.ingest.files import FileRef
from pipeline.ingest.rangefile import Digests
from pipeline.ingest.rawzone import (
    ShardResult,
    archive_prefix,
    completed,
    extracted_versions,
    folder_sha256,
    images_prefix,
    known,
    raw_image_key,
    remember,
    shard_prefix,
    write_records,
)
from pipeline.ingest.sources import archive_kind
from pipeline.ingest.tars import iter_tar
from pipeline.ingest.zips import iter_zip
from pipeline.progress import Progress
from pipeline.store.storage import ObjectInfo, Store

log = logging.getLogger(__name__)

MAX_IN_FLIGHT_BYTES = 256 << 20


def iter_members(fh: Readable, name: str, limits: Limits | None = None) -> Iterator[Member]:
    """Yield the members of an archive, choosing the reader by the archive's name.

    Raises:
        BadDataError: the name is no archive's, or the reader refuses the archive (names it).
    """
    kind = archive_kind(name)
    if kind == "zip":
        return iter_zip(fh, name, limits)
    if kind == "tar":
        return iter_tar(fh, name, limits)
    raise BadDataError(f"{name}: unknown archive type (expected .zip or .tar.gz)")


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
    except ImageError as exc:
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
    files.verify_md5(ref, str(done["md5"]))
    return True


def _prehash(ref: FileRef, limits: Limits | None) -> Digests:
    """SHA-256 (and MD5, checked against the list) of a local archive, or a folder's identity."""
    log.info("%s: fingerprint not seen before; hashing it to look for an extraction of the same bytes", ref.name)
    if not files.is_folder(ref):
        return files.hash_file(ref)
    folder = FolderShard(ref.location, ref.name, limits)
    unread = [(member.path, member.problem or "") for member in folder.members() if member.data is None]
    return Digests(ref.size, folder_sha256(folder.sha256, unread), None)


def _stream(
    store: Store, ref: FileRef, existing: dict[str, ObjectInfo], workers: int, limits: Limits | None
) -> tuple[list[dict[str, Any]], int, Digests]:
    lander = _Lander(store, ref, existing, workers)
    seen: set[str] = set()
    try:
        if files.is_folder(ref):
            folder = FolderShard(ref.location, ref.name, limits)
            unread: list[tuple[str, str]] = []
            for member in folder.members():
                if member.data is None:
                    unread.append((member.path, member.problem or ""))
                lander.add(member, seen)
            rows, digests = lander.finish(), Digests(ref.size, folder_sha256(folder.sha256, unread), None)
        else:
            with files.open_file(ref, md5=ref.md5 is not None) as fh:
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
    if files.is_local(ref) and files.refreshed(ref).fingerprint != ref.fingerprint:
        raise BadDataError(
            f"{ref.location} changed while this run read it (its size, times or inode differ from when "
            "extraction started); nothing was recorded for it: rerun once the file is no longer being written"
        )


def extract_shard(store: Store, ref: FileRef, upload_workers: int = 16, limits: Limits | None = None) -> ShardResult:
    """Stream one archive into the raw zone, or skip it when its content is extracted already.

    Raises:
        BadDataError: the archive is not a readable zip or tar, exceeds the limits, fails its md5, or changed
            while it was read (names the file).
        StoreUnavailableError: the store or the source server could not be reached (a retry may help).
    """
    ref = files.refreshed(ref)  # a local file as it is now, not as discovery saw it
    done = known(store, ref)
    if done is not None and _md5_known(ref, done):
        log.info("%s unchanged since its last extraction: skipped", ref.name)
        return _skipped(ref, done)
    before: Digests | None = None
    if files.is_local(ref) and extracted_versions(store, ref.name):
        before = _prehash(ref, limits)
        done = completed(store, before.sha256, ref.name)
        if done is not None:
            _check_unchanged_while_read(ref, None, before)
            remember(store, ref, before.sha256)
            log.info("%s unchanged since its last extraction: skipped (same sha256, new fingerprint)", ref.name)
            return _skipped(ref, done, before.md5)
    existing = {info.key: info for info in store.list(images_prefix(ref.name))}
    rows, uploaded, digests = _stream(store, ref, existing, upload_workers, limits)
    files.verify_md5(ref, digests.md5)
    _check_unchanged_while_read(ref, before, digests)
    md5 = digests.md5 or (before.md5 if before else None)
    prefix = archive_prefix(ref.name, digests.sha256)
    ok = sum(1 for row in rows if row["status"] == "ok")
    verified = ref.md5 is not None
    result = ShardResult(ref.name, prefix, ok, len(rows) - ok, digests.sha256, False, uploaded, md5, verified)
    if completed(store, digests.sha256, ref.name) is None:  # else a run beside this one wrote the same
        write_records(store, ref, result, rows)
    remember(store, ref, digests.sha256)
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
    faults.point("extract.shard")
    return result
