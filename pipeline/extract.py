"""Extract stage: one image archive into the store's raw zone.

Layout under the store (``<stem>`` is the archive name without extension, e.g. ``images_001``)::

    raw/shards/<stem>/images/<8-digit>_<3-digit>.png   every sound image, sha256 sent as checksum
    raw/shards/<stem>/manifest.parquet                 one row per image + one per quarantined member
    raw/shards/<stem>/_SUCCESS.json                    written last: archive fingerprint, sha256, counts

A shard whose ``_SUCCESS.json`` carries the archive's current fingerprint is skipped; a shard
killed half-way is simply redone (every write is an idempotent PUT of the same key and bytes).
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

from pipeline import images, nih
from pipeline.archives import HashingReader, Member, iter_members
from pipeline.progress import Progress
from pipeline.sources import FileRef, open_file
from pipeline.storage import Store

log = logging.getLogger(__name__)

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
    name = PurePosixPath(member.path.replace("\\", "/")).name
    return {
        "image_index": name,
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


def inspect(member: Member, shard: str, prefix: str, seen: set[str]) -> dict[str, Any]:
    """Decide what happens to one member: a row with status ``ok`` or ``quarantined`` and a reason."""
    if member.problem or member.data is None:
        return _row(member, shard, status="quarantined", reason=member.problem or "unreadable member")
    name = PurePosixPath(member.path.replace("\\", "/")).name
    if not nih.IMAGE_NAME_RE.match(name):
        return _row(member, shard, status="skipped", reason="name is not NNNNNNNN_NNN.png")
    if name in seen:
        return _row(member, shard, status="quarantined", reason="same image name twice in this archive")
    try:
        info = images.check_png(member.data)
    except images.ImageError as exc:
        return _row(member, shard, status="quarantined", reason=str(exc))
    seen.add(name)
    digest = hashlib.sha256(member.data).hexdigest()
    return _row(member, shard, key=f"{prefix}/images/{name}", info=info, sha256=digest)


def _success(store: Store, ref: FileRef) -> dict[str, Any] | None:
    marker = f"{shard_prefix(ref.name)}/_SUCCESS.json"
    if not store.exists(marker):
        return None
    done: dict[str, Any] = json.loads(store.get_bytes(marker))
    return done if done.get("fingerprint") == ref.fingerprint else None


def _archive_sha256(ref: FileRef) -> str:
    digest = hashlib.sha256()
    with open_file(ref) as fh:
        for chunk in iter(lambda: fh.read(8 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Uploader:
    """Bounded concurrent uploads: at most ``2 * workers`` images in memory."""

    def __init__(self, store: Store, workers: int) -> None:
        self.store, self.limit = store, max(2, 2 * workers)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload")
        self.pending: deque[Future[str]] = deque()

    def put(self, key: str, data: bytes) -> None:
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self.store.put_bytes, key, data, content_type="image/png"))

    def drain(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _stream_members(store: Store, ref: FileRef, workers: int) -> tuple[list[dict[str, Any]], str]:
    prefix, rows, seen = shard_prefix(ref.name), [], set[str]()
    progress = Progress(f"extract {ref.name}", None, log)
    uploader = _Uploader(store, workers)
    try:
        with open_file(ref) as raw:
            reader = HashingReader(raw)
            stream = raw if ref.name.endswith(".zip") else reader
            for member in iter_members(stream, ref.name):  # type: ignore[arg-type]
                row = inspect(member, ref.name, prefix, seen)
                if row["status"] == "ok" and member.data is not None:
                    uploader.put(row["key"], member.data)
                rows.append(row)
                progress.advance()
    finally:
        uploader.drain()
    progress.finish()
    sha = _archive_sha256(ref) if ref.name.endswith(".zip") else reader.sha256.hexdigest()
    return rows, sha


def _remove_stale(store: Store, prefix: str, rows: list[dict[str, Any]]) -> None:
    keep = {row["key"] for row in rows if row["status"] == "ok"}
    stale = [info.key for info in store.list(f"{prefix}/images/") if info.key not in keep]
    for key in stale:
        store.delete(key)
    if stale:
        log.info("%s: removed %d images no longer in the archive", prefix, len(stale))


def _write_manifest(store: Store, prefix: str, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.put_bytes(f"{prefix}/manifest.parquet", buf.getvalue())


def extract_shard(store: Store, ref: FileRef, upload_workers: int = 16) -> ShardResult:
    """Stream one archive into the raw zone, or skip it when its fingerprint is unchanged.

    Raises:
        BadDataError: the archive is not a readable zip or tar (names the file).
    """
    prefix = shard_prefix(ref.name)
    done = _success(store, ref)
    if done is not None:
        log.info("%s unchanged since its last extraction: skipped", ref.name)
        return ShardResult(ref.name, prefix, done["images"], done["quarantined"], done["archive_sha256"], True)
    rows, sha = _stream_members(store, ref, upload_workers)
    _remove_stale(store, prefix, rows)
    _write_manifest(store, prefix, rows)
    ok = sum(1 for row in rows if row["status"] == "ok")
    marker = {
        "archive": ref.name,
        "fingerprint": ref.fingerprint,
        "size": ref.size,
        "archive_sha256": sha,
        "images": ok,
        "quarantined": len(rows) - ok,
    }
    store.put_bytes(f"{prefix}/_SUCCESS.json", json.dumps(marker, indent=2).encode())
    log.info("%s: %d images landed, %d quarantined or skipped", ref.name, ok, len(rows) - ok)
    return ShardResult(ref.name, prefix, ok, len(rows) - ok, sha, False)
