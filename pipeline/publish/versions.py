"""Publish stage: versions, claims, the manifest (written last), verification and the ``latest`` pointer.

A release is visible only once ``releases/<version>/manifest.json`` exists; it is created with a
conditional write (``If-None-Match: *``), so two publishers can never both publish one version.
Before any file of a version is written, the run *claims* the version
(``releases/<version>/_claim.json``, also a conditional write) with its input fingerprint: runs with
the same inputs produce the same bytes and may share the claim; a run with other inputs is refused.
``releases/latest.json`` moves only after every file was re-read and checked and the manifest written.

Which release ``latest`` names (the ordering rule). Every publication has an *as-of day*: the day a date
version names (``YYYY.MM.DD`` or ``YYYY.MM.DD.N``, the names runs choose from their logical date), and for any
other name (``v1``, ``rc1``, ``2026.12.01-hotfix``) the UTC day its manifest was published. Publications are
ordered by as-of day, then by the time their manifests were published, then by name. ``latest`` moves to a
newly published release unless it already names one that comes later in this order. So a named release
becomes ``latest`` when it is published and stays there until a later publication (a nightly run of that day or
after, or another named release) replaces it; a backfill, whose date is older than the as-of day of ``latest``,
never moves it back; and two releases of one day are ordered by when they were published.

``latest`` is moved with a conditional write: ``latest.json`` is read with its ETag, the rule decides, and the
new pointer is written with ``If-Match`` on that ETag (``If-None-Match: *`` when there is none yet). When
another run moved it in between, the write fails with 412 and the decision is made again on what that run
wrote, so two runs finishing at once always leave ``latest`` on the later of their releases.

Why files are written in place rather than staged under another prefix and copied: the claim already
makes the version's prefix private to runs with identical inputs, and nothing that lists or opens
releases (``list_versions``, ``latest.json``, :mod:`pipeline.read.client`, ``cxr verify``) treats a version
without a manifest as a release, so readers never see a half-written one. A staging prefix would only
move that guarantee onto a server-side copy of every file (the 42 GB of images twice over, as Parquet
and WebDataset), doubling the writes, and the copy would not be atomic either: the manifest would still
be the moment of publication. Reruns stay idempotent: same inputs, same keys, same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline import faults
from pipeline.config import InvalidNameError, RunConfig, check_version, check_version_arg
from pipeline.errors import PipelineError, ReleaseConflictError
from pipeline.store.storage import ConditionFailedError, ObjectExistsError, Store
from pipeline.store.workspace import get_json, put_json, release_prefix

log = logging.getLogger(__name__)

LATEST = "releases/latest.json"
MAX_SAME_DAY = 99
VERIFY_WORKERS = 8
#: Objects that may sit in a published release without a manifest entry (the manifest itself; a leftover claim).
UNLISTED_OK = frozenset({"manifest.json", "_claim.json"})
#: The names runs choose from their logical date: ``YYYY.MM.DD`` and ``YYYY.MM.DD.N``.
DATE_VERSION_RE = re.compile(r"(?P<y>[0-9]{4})\.(?P<m>[0-9]{2})\.(?P<d>[0-9]{2})(?:\.[0-9]{1,3})?", re.ASCII)
#: Conditional writes of ``latest.json`` tried before giving up (each failure means another run moved it).
LATEST_ATTEMPTS = 20
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)

#: Where a publication stands in the order ``latest`` follows: (as-of day, published at, name order).
LatestRank = tuple[dt.date, dt.datetime, tuple[tuple[int, int | str], ...]]


class LatestContentionError(PipelineError):
    """``latest.json`` kept changing under this run; the release is published, a rerun moves the pointer."""

    retryable = True


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


def check_file(store: Store, entry: dict[str, Any]) -> str | None:
    """Re-read one manifest entry from the store; return what is wrong with it, or None."""
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


def write_manifest(store: Store, version: str, manifest: dict[str, Any]) -> tuple[str, bool]:
    """Create the manifest (conditional write), re-read it, and return (its sha256, whether this call created it).

    An identical release already there (same input fingerprint) is a no-op: ``created`` is False.
    A different one is a conflict.
    """
    try:
        sha = put_json(store, manifest_key(version), manifest, if_absent=True)
    except ObjectExistsError:
        existing = get_json(store, manifest_key(version))
        if existing.get("input_fingerprint") != manifest.get("input_fingerprint"):
            raise ReleaseConflictError(
                f"release {version} was published meanwhile by run {existing.get('created_by_run')} with other "
                "content; published releases never change: publish under another version"
            ) from None
        return hashlib.sha256(store.get_bytes(manifest_key(version))).hexdigest(), False
    if hashlib.sha256(store.get_bytes(manifest_key(version))).hexdigest() != sha:
        raise PipelineError(f"{store.uri(manifest_key(version))} reads back different from what was written")
    return sha, True


def resolve_version(store: Store, version: str) -> str:
    """Turn ``latest`` into the version ``releases/latest.json`` names; other valid names pass through.

    Raises:
        InvalidNameError: ``version`` is neither ``latest`` nor a valid release name (``../v1``, ``a/b``...).
        PipelineError: nothing is published yet, or ``latest.json`` names something that is not a release name.
    """
    if check_version_arg(version) != "latest":
        return version
    latest = read_latest(store)
    if latest is None:
        raise PipelineError(f"nothing is published in {store.uri('releases/')} yet (no latest.json)")
    named = str(latest.get("version"))
    try:
        return check_version(named)
    except InvalidNameError:
        raise PipelineError(
            f"{store.uri(LATEST)} names {named!r}, which is not a release name: the pointer is damaged; open a "
            "release by its version (`cxr releases list`), and publish again to repair the pointer"
        ) from None


@dataclass(frozen=True)
class Listing:
    """Versions under ``releases/``: published (manifest present) and incomplete (claimed or being written)."""

    published: list[str]
    incomplete: list[str]


def _version_dirs(store: Store) -> list[str]:
    paginator = store.client.get_paginator("list_objects_v2")
    root = store.key("releases/")

    def names() -> list[str]:
        pages = paginator.paginate(Bucket=store.bucket, Prefix=root, Delimiter="/")
        return [p["Prefix"][len(root) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]

    return store.retrying(f"listing {store.uri('releases/')}", names)


def list_versions(store: Store) -> Listing:
    """Every version directory of the store, sorted oldest first; only manifests make a version published."""
    published: list[str] = []
    incomplete: list[str] = []
    for version in sorted(_version_dirs(store), key=version_key):
        (published if store.exists(manifest_key(version)) else incomplete).append(version)
    return Listing(published, incomplete)


def parent_of(store: Store, version: str) -> str | None:
    """The newest published version that sorts before ``version`` (None for the first release)."""
    older = [v for v in list_versions(store).published if version_key(v) < version_key(version)]
    return older[-1] if older else None


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


def _unlisted(store: Store, version: str, listed: set[str]) -> list[str]:
    prefix = release_prefix(version) + "/"
    found = (info.key.removeprefix(prefix) for info in store.list(prefix))
    extra = sorted(name for name in found if name not in listed and name not in UNLISTED_OK)
    return [f"{name}: not in the manifest" for name in extra]


def verify_release(store: Store, version: str, limit: int = 10) -> VerifyReport:
    """Re-read every file of a published release and check it against ``manifest.json``.

    Also reports objects under the release that the manifest does not list, and a ``latest.json``
    whose manifest checksum does not match. Returns at most ``limit`` problems.
    """
    resolved = resolve_version(store, version)
    if not store.exists(manifest_key(resolved)):
        raise PipelineError(
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


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Name order of versions (listings, parents): ``2026.11.26.2`` after ``2026.11.26``, before ``2026.11.27``.

    Not the order ``latest`` follows (that one also knows when each release was published: :func:`latest_rank`).
    """
    return tuple((0, int(part)) if part.isascii() and part.isdigit() else (1, part) for part in version.split("."))


def version_date(version: str) -> dt.date | None:
    """The day a date version names (``2026.11.26.2`` -> 2026-11-26); None for other names (``v1``, ``rc1``)."""
    match = DATE_VERSION_RE.fullmatch(version)
    if match is None:
        return None
    try:
        return dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:  # 2026.13.45 is a name, not a date
        return None


def _instant(text: Any) -> dt.datetime:
    """An ISO-8601 time as aware UTC (naive means UTC); the earliest time when missing or unreadable."""
    try:
        when = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return _EPOCH
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def latest_rank(version: str, published_at: Any) -> LatestRank:
    """Where a publication stands in the order ``latest`` follows (the rule is in the module docstring)."""
    when = _instant(published_at)
    return version_date(version) or when.date(), when, version_key(version)


def _pointer_rank(pointer: Any) -> LatestRank | None:
    """The rank of what ``latest.json`` names; None when it is damaged (then any release may replace it)."""
    if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
        return None
    return latest_rank(pointer["version"], pointer.get("published_at"))


def _read_latest_tagged(store: Store) -> tuple[Any, str | None]:
    """``latest.json`` (None when absent, the raw text when it is not JSON) and its ETag."""
    found = store.get_tagged(LATEST)
    if found is None:
        return None, None
    body, etag = found
    try:
        return json.loads(body), etag
    except ValueError:
        return body.decode(errors="replace"), etag


def _published_at(store: Store, version: str) -> str:
    """When the release's manifest says it was published (now, when it has no such field)."""
    manifest = read_manifest(store, version) or {}
    return str(manifest.get("published_at") or dt.datetime.now(dt.UTC).isoformat())


def move_latest(store: Store, version: str, manifest_sha256: str, fingerprint: str) -> bool:
    """Point ``releases/latest.json`` at a verified release unless it names a later one (module docstring).

    Conditional write, re-decided after every conflict, so a concurrent move is never overwritten blindly.
    Returns whether it moved.

    Raises:
        LatestContentionError: the pointer changed under every one of :data:`LATEST_ATTEMPTS` writes.
    """
    pointer = {
        "version": version,
        "manifest_sha256": manifest_sha256,
        "input_fingerprint": fingerprint,
        "published_at": _published_at(store, version),
    }
    rank = latest_rank(version, pointer["published_at"])
    for attempt in range(1, LATEST_ATTEMPTS + 1):
        current, etag = _read_latest_tagged(store)
        held = _pointer_rank(current) if current is not None else None
        if held is not None and held > rank:
            log.info("latest stays on %s (it comes after %s in the order latest follows)", current["version"], version)
            return False
        if current is not None and held is None:
            log.warning("%s is damaged (%.80r); replacing it with %s", store.uri(LATEST), current, version)
        faults.point("publish.latest")
        try:
            put_json(store, LATEST, pointer, if_absent=etag is None, if_match=etag)
            return True
        except ConditionFailedError:
            log.info(
                "%s changed while moving it to %s (attempt %d); deciding again", store.uri(LATEST), version, attempt
            )
    raise LatestContentionError(
        f"{store.uri(LATEST)} changed under each of {LATEST_ATTEMPTS} attempts to point it at {version}; the release "
        f"is published: rerun the run (or its publish task) to move the pointer"
    )
