"""The ``releases/latest.json`` pointer: the order it follows, and moving it with a conditional write.

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
wrote, so two runs finishing at once always leave ``latest`` on the later of their releases. It moves only
after every file of the release was re-read and checked and the manifest written.

Listings and parents use a simpler order, the *name order* (:func:`version_key`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from typing import Any

from pipeline import faults
from pipeline.errors import LatestContentionError
from pipeline.publish.manifest import read_manifest
from pipeline.store import layout
from pipeline.store.storage import ConditionFailedError, Store
from pipeline.store.tables import get_json, put_json

log = logging.getLogger(__name__)

LATEST = layout.LATEST
#: The names runs choose from their logical date: ``YYYY.MM.DD`` and ``YYYY.MM.DD.N``.
DATE_VERSION_RE = re.compile(r"(?P<y>[0-9]{4})\.(?P<m>[0-9]{2})\.(?P<d>[0-9]{2})(?:\.[0-9]{1,3})?", re.ASCII)
#: Conditional writes of ``latest.json`` tried before giving up (each failure means another run moved it).
LATEST_ATTEMPTS = 20
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)

#: Where a publication stands in the order ``latest`` follows: (as-of day, published at, name order).
LatestRank = tuple[dt.date, dt.datetime, tuple[tuple[int, int | str], ...]]


def read_latest(store: Store) -> dict[str, Any] | None:
    """Return ``releases/latest.json`` or None when nothing was published yet."""
    if not store.exists(LATEST):
        return None
    latest: dict[str, Any] = get_json(store, LATEST)
    return latest


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


def point_latest_if_behind(store: Store, version: str, fingerprint: str) -> None:
    """Finish a run that crashed after its manifest was written but before ``latest`` moved."""
    latest = read_latest(store)
    if latest is None or latest.get("version") != version:
        body = store.get_bytes(layout.manifest_key(version))
        move_latest(store, version, hashlib.sha256(body).hexdigest(), fingerprint)
