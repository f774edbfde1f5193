"""Publish stage: versions, claims, the manifest (written last) and the ``latest`` pointer.

A release is visible only once ``releases/<version>/manifest.json`` exists; it is created with a
conditional write (``If-None-Match: *``), so two publishers can never both publish one version.
Before any file of a version is written, the run *claims* the version
(``releases/<version>/_claim.json``, also a conditional write) with its input fingerprint: runs with
the same inputs produce the same bytes and may share the claim; a run with other inputs is refused.
``releases/latest.json`` moves only after the manifest is written and every file re-read and checked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

from pipeline.config import RunConfig
from pipeline.errors import ReleaseConflictError
from pipeline.storage import ObjectExistsError, Store
from pipeline.workspace import get_json, put_json, release_prefix

log = logging.getLogger(__name__)

LATEST = "releases/latest.json"
MAX_SAME_DAY = 99


def manifest_key(version: str) -> str:
    """``releases/<version>/manifest.json``."""
    return f"{release_prefix(version)}/manifest.json"


def read_manifest(store: Store, version: str) -> dict[str, Any] | None:
    """Return a published release's manifest, or None when the version is not published."""
    if not store.exists(manifest_key(version)):
        return None
    manifest: dict[str, Any] = get_json(store, manifest_key(version))
    return manifest


def read_latest(store: Store) -> dict[str, Any] | None:
    """Return ``releases/latest.json`` or None when nothing was published yet."""
    if not store.exists(LATEST):
        return None
    latest: dict[str, Any] = get_json(store, LATEST)
    return latest


def date_version(logical_date: str | None) -> str:
    """``YYYY.MM.DD`` of the run's logical date (today, UTC, when none is given)."""
    day = dt.date.fromisoformat(logical_date[:10]) if logical_date else dt.datetime.now(dt.UTC).date()
    return day.strftime("%Y.%m.%d")


def _try_claim(store: Store, version: str, fingerprint: str, run_id: str, force: bool) -> str:
    """Return ``published`` (same content already out), ``claimed``, or ``taken`` (other content)."""
    manifest = read_manifest(store, version)
    if manifest is not None:
        return "published" if manifest.get("input_fingerprint") == fingerprint else "taken"
    claim_key = f"{release_prefix(version)}/_claim.json"
    claim = {"fingerprint": fingerprint, "run_id": run_id, "claimed_at": dt.datetime.now(dt.UTC).isoformat()}
    try:
        put_json(store, claim_key, claim, if_absent=True)
        return "claimed"
    except ObjectExistsError:
        held = get_json(store, claim_key)
    if held.get("fingerprint") == fingerprint:
        return "claimed"
    if force:
        log.warning("version %s: taking over the claim of run %s (--force)", version, held.get("run_id"))
        store.delete_prefix(release_prefix(version) + "/")
        return _try_claim(store, version, fingerprint, run_id, force=False)
    return "taken"


def claim_version(store: Store, cfg: RunConfig, fingerprint: str) -> tuple[str, bool]:
    """Choose and claim the version this run publishes; return (version, unchanged).

    ``unchanged`` is True when a published release already holds exactly these inputs; the run
    then publishes nothing new. An explicit version taken by other content is refused.
    """
    latest = read_latest(store)
    if latest and latest.get("input_fingerprint") == fingerprint and not cfg.force and not cfg.release:
        return str(latest["version"]), True
    if cfg.release:
        state = _try_claim(store, cfg.release, fingerprint, cfg.run_id, cfg.force)
        if state == "taken":
            raise ReleaseConflictError(
                f"release {cfg.release} already exists (or is being published) with different content; "
                "published releases never change: choose another version"
            )
        return cfg.release, state == "published"
    base = date_version(cfg.logical_date)
    for n in range(1, MAX_SAME_DAY + 1):
        version = base if n == 1 else f"{base}.{n}"
        state = _try_claim(store, version, fingerprint, cfg.run_id, force=False)
        if state != "taken":
            return version, state == "published"
    raise ReleaseConflictError(f"more than {MAX_SAME_DAY} different releases on {base}")


def sha256_of_object(store: Store, rel: str) -> str:
    """Stream an object and return its SHA-256."""
    digest = hashlib.sha256()
    stream = store.open_stream(rel)
    for chunk in iter(lambda: stream.read(8 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def verify_files(store: Store, files: list[dict[str, Any]], limit: int = 10) -> list[str]:
    """Re-read every listed file; return up to ``limit`` human-readable mismatches."""
    problems: list[str] = []
    for entry in files:
        info = store.head(entry["path"])
        if info is None:
            problems.append(f"{entry['path']}: missing")
        elif info.size != entry["size"]:
            problems.append(f"{entry['path']}: size {info.size}, manifest says {entry['size']}")
        elif sha256_of_object(store, entry["path"]) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from the manifest")
        if len(problems) >= limit:
            break
    return problems


def write_manifest(store: Store, version: str, manifest: dict[str, Any]) -> str:
    """Create the manifest (conditional write) and return its sha256.

    An identical manifest already there is a no-op; a different one is a conflict.
    """
    try:
        return put_json(store, manifest_key(version), manifest, if_absent=True)
    except ObjectExistsError:
        existing = get_json(store, manifest_key(version))
        if existing.get("input_fingerprint") != manifest.get("input_fingerprint"):
            raise ReleaseConflictError(f"release {version} was published meanwhile with other content") from None
        return hashlib.sha256(store.get_bytes(manifest_key(version))).hexdigest()


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of versions: ``2026.11.26.2`` after ``2026.11.26`` and before ``2026.11.27``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in version.split("."))


def move_latest(store: Store, version: str, manifest_sha256: str, fingerprint: str) -> bool:
    """Point ``releases/latest.json`` at a verified release, unless a newer version is already there.

    A backfill that publishes an older date leaves ``latest`` on the newest release. Returns whether it moved.
    """
    current = read_latest(store)
    if current is not None and version_key(str(current["version"])) > version_key(version):
        log.info("latest stays on %s (newer than %s)", current["version"], version)
        return False
    put_json(
        store,
        LATEST,
        {
            "version": version,
            "manifest_sha256": manifest_sha256,
            "input_fingerprint": fingerprint,
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    return True
