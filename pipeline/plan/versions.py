"""Version choice and claims: which version a run publishes, one algorithm for a real run and a dry run.

A run publishes under the version its ``release`` setting names, or else under the first of ``YYYY.MM.DD``,
``YYYY.MM.DD.2``, ... (its logical date) that is free, already published with the same inputs, or claimed for
them. When ``releases/latest.json`` already holds exactly these inputs (and no version or ``force`` was asked
for), the run publishes nothing new: the result is ``unchanged``.

Before any file of a version is written, the run *claims* it (``releases/<version>/_claim.json``, a conditional
write) with its input fingerprint: runs with the same inputs produce the same bytes and may share the claim; a
run with other inputs is refused (or moves on to the next same-day name), and ``force`` takes over the claim of
an explicit version (never a published release). :func:`choose_version` with ``claim=False`` (the dry run) takes
every decision on read-only looks at the same objects, so for the same store state it answers with the version
the real run claims.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Protocol

from pipeline.config import RunConfig
from pipeline.errors import ReleaseConflictError
from pipeline.store import layout
from pipeline.store.storage import ObjectExistsError, Store
from pipeline.store.tables import get_json, put_json

log = logging.getLogger(__name__)

#: Same-day names a run may try (``YYYY.MM.DD`` then ``.2`` ... ``.99``) before it is refused.
MAX_SAME_DAY = 99


class _Step(Protocol):
    def __call__(self, store: Store, version: str, fingerprint: str, run_id: str, force: bool) -> str: ...


def date_version(logical_date: str | None) -> str:
    """``YYYY.MM.DD`` of the run's logical date (today, UTC, when none is given)."""
    day = dt.date.fromisoformat(logical_date[:10]) if logical_date else dt.datetime.now(dt.UTC).date()
    return day.strftime("%Y.%m.%d")


def _read(store: Store, key: str) -> dict[str, Any] | None:
    """A JSON object of the store, or None when there is none."""
    if not store.exists(key):
        return None
    found: dict[str, Any] = get_json(store, key)
    return found


def _published(store: Store, version: str, fingerprint: str) -> str | None:
    """``published`` (these inputs are out under ``version``), ``taken`` (other inputs), None (not published)."""
    manifest = _read(store, layout.manifest_key(version))
    if manifest is None:
        return None
    return "published" if manifest.get("input_fingerprint") == fingerprint else "taken"


def _look(store: Store, version: str, fingerprint: str, run_id: str, force: bool) -> str:
    """What :func:`_claim` would return, from read-only looks (``run_id`` is unused: nothing is written)."""
    state = _published(store, version, fingerprint)
    if state is not None:
        return state
    held = _read(store, layout.claim_key(version))
    return "claimed" if held is None or held.get("fingerprint") == fingerprint or force else "taken"


def _claim(store: Store, version: str, fingerprint: str, run_id: str, force: bool) -> str:
    """Claim ``version``; return ``published`` (same content already out), ``claimed``, or ``taken`` (other content)."""
    state = _published(store, version, fingerprint)
    if state is not None:
        return state
    key = layout.claim_key(version)
    claim = {"fingerprint": fingerprint, "run_id": run_id, "claimed_at": dt.datetime.now(dt.UTC).isoformat()}
    try:
        put_json(store, key, claim, if_absent=True)
        return "claimed"
    except ObjectExistsError:
        held = get_json(store, key)
    if held.get("fingerprint") == fingerprint:
        return "claimed"
    if force:
        log.warning("version %s: taking over the claim of run %s (--force)", version, held.get("run_id"))
        store.delete_prefix(layout.release_prefix(version) + "/")
        return _claim(store, version, fingerprint, run_id, force=False)
    return "taken"


def choose_version(store: Store, cfg: RunConfig, fingerprint: str, *, claim: bool) -> tuple[str, bool]:
    """Choose the version a run with these inputs publishes; return (version, unchanged).

    With ``claim`` the version is claimed (a real run); without, nothing is written (a dry run) and the answer
    is the version a real run would claim on the same store. ``unchanged`` is True when a published release
    already holds exactly these inputs; the run then publishes nothing new.

    Raises:
        ReleaseConflictError: an explicit ``release`` is published (or claimed, without ``force``) with other
            content, or every same-day name is taken.
    """
    latest = _read(store, layout.LATEST)
    if latest and latest.get("input_fingerprint") == fingerprint and not cfg.force and not cfg.release:
        return str(latest["version"]), True
    step: _Step = _claim if claim else _look
    if cfg.release:
        state = step(store, cfg.release, fingerprint, cfg.run_id, cfg.force)
        if state == "taken":
            raise ReleaseConflictError(
                f"release {cfg.release} already exists (or is being published) with different content; "
                "published releases never change: choose another version"
            )
        return cfg.release, state == "published"
    base = date_version(cfg.logical_date)
    for n in range(1, MAX_SAME_DAY + 1):
        version = base if n == 1 else f"{base}.{n}"
        state = step(store, version, fingerprint, cfg.run_id, False)
        if state != "taken":
            return version, state == "published"
    raise ReleaseConflictError(
        f"more than {MAX_SAME_DAY} different releases on {base}: name this release explicitly (--release)"
    )


def claim_version(store: Store, cfg: RunConfig, fingerprint: str) -> tuple[str, bool]:
    """Choose and claim the version this run publishes (:func:`choose_version` with ``claim``)."""
    return choose_version(store, cfg, fingerprint, claim=True)


def release_claim(store: Store, version: str, fingerprint: str) -> None:
    """Remove the claim on ``version`` once its run is done with it (a claim of other content is never touched)."""
    key = layout.claim_key(version)
    if store.exists(key) and get_json(store, key).get("fingerprint") == fingerprint:
        store.delete(key)
