"""The raw zone's records: image keys, each archive's manifest and marker, the seen index, the source manifest.

Layout under the store (keys from :mod:`pipeline.store.layout`; ``<stem>`` is the archive name without
extension, e.g. ``images_001``)::

    raw/shards/<stem>/images/<image sha256>/<NNNNNNNN_NNN>.png  every sound image, keyed by its bytes' sha256
    raw/shards/<stem>/archives/<sha256>/manifest.parquet        one row per member of that very archive
    raw/shards/<stem>/archives/<sha256>/_SUCCESS.json           written last: sha256, md5, counts, layout
    raw/shards/<stem>/seen/<identity>.json                      location + fingerprint -> archive sha256
    raw/runs/<run>/source_manifest.json                         every source file a run read

The raw zone is shared by every run on the store, whatever its source: nothing in it is ever changed or
deleted by a run. Image objects are content-addressed (:func:`raw_image_key`), so a key always holds the
bytes its name says, and an archive's manifest and marker sit under the archive's own SHA-256 (for an
unpacked folder, the digest of its files: :func:`folder_sha256`), so a plan that reads the manifests of
the SHA-256s its run extracted (:func:`pipeline.plan.planning.load_raw_images`) can never pick up another
archive's bytes, and two runs from different sources into one store never disturb each other. Objects
no archive uses any more stay until a clean-up removes them.

``seen/<identity>.json`` (the identity is a hash of the file's location and fingerprint:
:func:`pipeline.ingest.files.content_identity`) names the SHA-256 found there last time: :func:`known` gives
that archive's marker when its extraction is complete, so a rerun skips it without reading it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ingest import files
from pipeline.ingest.files import FileRef
from pipeline.ingest.sources import SourceListing, shard_stem
from pipeline.store import layout
from pipeline.store.storage import Store
from pipeline.store.tables import put_json

#: Version of what an extraction writes and decides: a marker of another version makes the archive run
#: again. Bump it whenever the same archive bytes would give other rows or other image bytes.
LAYOUT = 3

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


def shard_prefix(name: str) -> str:
    """Store-relative prefix of a shard's raw zone (every version of the archive of that name)."""
    return layout.shard_prefix(shard_stem(name))


def images_prefix(name: str) -> str:
    """What lists the landed images of every version of the archive of that name."""
    return layout.images_prefix(shard_stem(name))


def archive_prefix(name: str, archive_sha256: str) -> str:
    """Where the manifest and marker of one archive's content are kept."""
    return layout.archive_prefix(shard_stem(name), archive_sha256)


def raw_image_key(prefix: str, name: str, digest: bytes) -> str:
    """The key of an image under a shard's ``prefix``: named by the SHA-256 of the bytes stored there."""
    return layout.raw_image_key(prefix, digest.hex(), name)


def seen_key(ref: FileRef) -> str | None:
    """Where the archive found at ``ref``'s location and fingerprint is remembered (None: no fingerprint)."""
    identity = files.content_identity(ref)
    return None if identity is None else layout.seen_key(shard_stem(ref.name), identity)


def folder_sha256(files_digest: str, unread: list[tuple[str, str]]) -> str:
    """The identity of an unpacked folder: its files' digest (``FolderShard.sha256``) and every entry that
    was not read (links, special or oversized files, with their reasons), which also make manifest rows."""
    material = "folder\0" + files_digest + "".join(f"\0{path}\0{problem}" for path, problem in sorted(unread))
    return hashlib.sha256(material.encode()).hexdigest()


def completed(store: Store, archive_sha256: str, name: str) -> dict[str, Any] | None:
    """The ``_SUCCESS.json`` of this archive content (its manifest present, this layout), else None."""
    prefix = archive_prefix(name, archive_sha256)
    marker = layout.archive_marker_key(prefix)
    if not store.exists(marker):
        return None
    done: dict[str, Any] = json.loads(store.get_bytes(marker))
    if done.get("layout") != LAYOUT or done.get("archive_sha256") != archive_sha256:
        return None
    return done if store.exists(layout.archive_manifest_key(prefix)) else None


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


def remember(store: Store, ref: FileRef, archive_sha256: str) -> None:
    """Record that ``ref``'s location and fingerprint hold the archive ``archive_sha256`` (the seen index)."""
    key = seen_key(ref)
    if key is not None:
        record = {"archive_sha256": archive_sha256, "layout": LAYOUT}
        put_json(store, key, {**record, "archive": ref.name, "location": ref.location, "fingerprint": ref.fingerprint})


def extracted_versions(store: Store, name: str) -> set[str]:
    """SHA-256s of the archives of this shard name that have a marker in the raw zone."""
    prefix = layout.archives_prefix(shard_stem(name))
    found = (info.key.removeprefix(prefix) for info in store.list(prefix))
    return {key.split("/", 1)[0] for key in found if key.endswith(f"/{layout.MARKER}")}


def write_records(store: Store, ref: FileRef, result: ShardResult, rows: list[dict[str, Any]]) -> None:
    """Write one archive's manifest, then its marker (last: the archive counts as extracted from then on)."""
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.put_bytes(layout.archive_manifest_key(result.prefix), buf.getvalue())
    marker = {**result.to_dict(), "archive": ref.name, "location": ref.location, "layout": LAYOUT}
    marker.update(fingerprint=ref.fingerprint, size=ref.size)
    put_json(store, layout.archive_marker_key(result.prefix), marker)


def record_sources(store: Store, listing: SourceListing, run_id: str) -> str:
    """Write ``raw/runs/<run>/source_manifest.json``: every source file with size, fingerprint and hashes.

    Metadata files are hashed here (and their md5 checked); an archive's SHA-256 comes from the raw zone
    when its location and fingerprint were seen before, else it is null until ``extract_shard`` records
    it (``recorded_in``; the release manifest names the SHA-256s the run really used).
    """
    entries: list[dict[str, Any]] = []
    for ref in listing.shards:
        done = known(store, ref)
        sha = str(done["archive_sha256"]) if done else None
        where = layout.archive_marker_key(archive_prefix(ref.name, sha)) if sha else seen_key(ref)
        entries.append({**ref.to_dict(), "kind": "archive", "sha256": sha, "recorded_in": where})
    for ref in (*listing.metadata_files(), *([listing.checksums] if listing.checksums else [])):
        digests = files.hash_file(ref)
        entries.append({**ref.to_dict(), "kind": "metadata", "sha256": digests.sha256, "md5_actual": digests.md5})
    for ref in listing.annotation_files():
        digests = files.hash_file(ref)
        entries.append({**ref.to_dict(), "kind": "annotation", "sha256": digests.sha256, "md5_actual": digests.md5})
    rel = layout.source_manifest_key(run_id)  # beside the raw zone: outlives the run's workspace
    put_json(store, rel, {"source": listing.source, "data_entry": listing.data_entry.name, "files": entries})
    return store.uri(rel)
