"""Check a release's files in the store against what was written (publishing) or the manifest (``cxr verify``).

Publishing checks every file it wrote before the manifest exists from the store's own metadata
(:func:`verify_uploads`): one HEAD per file, its size and the checksum the store verified at upload (the SHA-256
of a single PUT, the composite CRC32 of a multipart upload) against what the writer recorded, so no byte is read
back; a file whose checksum the store does not report is re-read in full instead (logged). ``cxr verify`` checks a
published release afterwards by reading every byte (:func:`verify_release`, :func:`verify_files`): every listed
file is there with its size and SHA-256, nothing unlisted sits beside them, and ``latest.json`` carries the
manifest's checksum when it names the release.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ReleaseNotFoundError
from pipeline.publish.latest import LATEST, read_latest
from pipeline.publish.listing import resolve_version
from pipeline.publish.manifest import UNLISTED_OK, is_published, manifest_key
from pipeline.store.layout import release_prefix
from pipeline.store.multipart import UPLOAD_CRC32
from pipeline.store.storage import Store

log = logging.getLogger(__name__)

VERIFY_WORKERS = 8


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of re-checking a published release against its manifest."""

    version: str
    files: int
    bytes: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every file matched and nothing unlisted was found."""
        return not self.problems


def sha256_of_object(store: Store, rel: str) -> str:
    """Stream an object and return its SHA-256."""
    digest = hashlib.sha256()
    stream = store.open_stream(rel)
    for chunk in iter(lambda: stream.read(8 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def check_file(store: Store, entry: dict[str, Any]) -> str | None:
    """Re-read one manifest entry (``path`` store-relative) from the store; return what is wrong with it, or None."""
    info = store.head(entry["path"])
    if info is None:
        return f"{entry['path']}: missing"
    if info.size != entry["size"]:
        return f"{entry['path']}: size {info.size}, manifest says {entry['size']}"
    if sha256_of_object(store, entry["path"]) != entry["sha256"]:
        return f"{entry['path']}: sha256 differs from the manifest"
    return None


def verify_files(store: Store, files: list[dict[str, Any]], limit: int = 10) -> list[str]:
    """Re-read every listed file (a few at a time); return the first ``limit`` mismatches in listing order."""
    with ThreadPoolExecutor(max_workers=VERIFY_WORKERS, thread_name_prefix="verify") as pool:
        outcomes = pool.map(lambda entry: check_file(store, entry), files)
        problems = [problem for problem in outcomes if problem is not None]
    return problems[:limit]


def expected_checksum(entry: dict[str, Any]) -> tuple[str, str]:
    """The checksum field the store holds for a written file and its value: the composite CRC32 recorded at a
    multipart upload, else the SHA-256 every single PUT carries (base64, as S3 reports both)."""
    if entry.get(UPLOAD_CRC32):
        return "ChecksumCRC32", str(entry[UPLOAD_CRC32])
    return "ChecksumSHA256", base64.b64encode(bytes.fromhex(entry["sha256"])).decode()


def check_upload(store: Store, entry: dict[str, Any]) -> str | None:
    """Check one written file (``path`` store-relative) from the store's metadata: there, with the size and the
    checksum its writer recorded; return what is wrong, or None. A file whose checksum the store does not report
    is re-read in full (:func:`check_file`) and that is logged."""
    info = store.head(entry["path"], checksums=True)
    if info is None:
        return f"{entry['path']}: missing"
    if info.size != entry["size"]:
        return f"{entry['path']}: size {info.size}, written {entry['size']}"
    name, value = expected_checksum(entry)
    held = info.checksums.get(name)
    if held is None:
        log.warning(
            "%s: the store reports no %s for it (it holds %s); reading it back in full to check its sha256",
            store.uri(entry["path"]),
            name,
            ", ".join(sorted(info.checksums)) or "no checksum",
        )
        return check_file(store, entry)
    if held != value:
        return f"{entry['path']}: the store's {name} {held} is not the {value} written (the object was replaced)"
    return None


def verify_uploads(store: Store, files: list[dict[str, Any]], limit: int = 10) -> list[str]:
    """Check every written file from the store's metadata (a few at a time, :func:`check_upload`); return the first
    ``limit`` mismatches in listing order. What publishing calls before the manifest exists."""
    with ThreadPoolExecutor(max_workers=VERIFY_WORKERS, thread_name_prefix="verify") as pool:
        outcomes = pool.map(lambda entry: check_upload(store, entry), files)
        problems = [problem for problem in outcomes if problem is not None]
    return problems[:limit]


def _unlisted(store: Store, version: str, listed: set[str]) -> list[str]:
    prefix = release_prefix(version) + "/"
    found = (info.key.removeprefix(prefix) for info in store.list(prefix))
    extra = sorted(name for name in found if name not in listed and name not in UNLISTED_OK)
    return [f"{name}: not in the manifest" for name in extra]


def verify_release(store: Store, version: str, limit: int = 10) -> VerifyReport:
    """Re-read every file of a published release and check it against ``manifest.json``.

    Also reports objects under the release that the manifest does not list, and a ``latest.json``
    whose manifest checksum does not match. Returns at most ``limit`` problems.

    Raises:
        ReleaseNotFoundError: ``version`` (or what ``latest`` names) is not published.
    """
    resolved = resolve_version(store, version)
    if not is_published(store, resolved):
        raise ReleaseNotFoundError(
            f"release {resolved} is not published in {store.uri('releases/')} (no manifest.json); "
            "`cxr releases list` shows the published versions"
        )
    body = store.get_bytes(manifest_key(resolved))
    manifest = json.loads(body)
    prefix = release_prefix(resolved)
    files = [{**f, "path": f"{prefix}/{f['path']}"} for f in manifest["files"]]
    problems = verify_files(store, files, limit)
    problems += _unlisted(store, resolved, {f["path"] for f in manifest["files"]})
    latest = read_latest(store)
    if (
        latest
        and latest.get("version") == resolved
        and latest.get("manifest_sha256") != hashlib.sha256(body).hexdigest()
    ):
        problems.append(f"{LATEST}: manifest sha256 differs from {manifest_key(resolved)}")
    return VerifyReport(resolved, len(files), sum(int(f["size"]) for f in files), problems[:limit])
