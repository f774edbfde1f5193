"""Clean-up of what runs leave behind: workspaces (``runs/<run>/``) of runs that failed, were rejected in review or
were abandoned, and the unpublished release folders (``releases/<version>/`` with a claim, no manifest) they claimed.

A successful publish deletes its run's workspace, so every workspace left is a leftover or a run in progress. A
workspace is *stale* when nothing under it was written for ``idle`` (its newest object's LastModified), or at once
when its review record (``raw/runs/<run>/review.json``) says rejected and nothing was written after it; never when
its run is one the caller keeps (its own run, the runs Airflow has in progress). A claimed release folder goes with
its run's workspace; a claimed folder whose run has no workspace left goes alone once claim and files are idle
(an *abandoned claim*). Whatever the reason, these are never touched:

- a published release (a version with ``manifest.json``), whoever its claim names;
- a release folder whose claim names another run, or a version the plan of a workspace that is kept names (runs
  with the same inputs share a claim, so the run writing there may not be the one the claim names);
- the raw zone (``raw/``): landed images and every run's source manifest and review record outlive the run.

:func:`find_stale` only looks; :func:`remove` deletes, re-checking each folder right before it does, so running it
twice (or on a list found a while ago) removes nothing that is no longer stale.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipeline.errors import UsageError
from pipeline.store import layout
from pipeline.store.storage import Store

log = logging.getLogger(__name__)

REJECTED = "rejected in review"
ABANDONED = "abandoned claim"
_BATCH = 1000  # keys per DeleteObjects request (the S3 limit)


@dataclass(frozen=True)
class _Object:
    key: str
    size: int
    modified: dt.datetime


@dataclass(frozen=True)
class Workspace:
    """One run's workspace as found: its run, size, newest write and, when it is stale, why."""

    segment: str
    run_id: str | None
    objects: int
    bytes: int
    newest: dt.datetime
    #: Why it may be removed (``rejected in review``, ``idle 3d 4h``); None when it is kept.
    stale: str | None
    #: The version its plan names (None before it planned).
    version: str | None = None

    @property
    def prefix(self) -> str:
        return f"{layout.RUNS}/{self.segment}/"


@dataclass(frozen=True)
class StaleWorkspace:
    """A workspace to remove (or, with ``workspace`` False, an abandoned claim whose run has no workspace left).

    ``release`` is the unpublished release folder its run claimed (``releases/<release>/``), removed with it.
    """

    segment: str
    run_id: str | None
    reason: str
    objects: int
    bytes: int
    newest: dt.datetime | None
    release: str | None = None
    release_objects: int = 0
    release_bytes: int = 0
    workspace: bool = True

    @property
    def prefix(self) -> str | None:
        """``runs/<run>/``, or None for an abandoned claim."""
        return f"{layout.RUNS}/{self.segment}/" if self.workspace else None


@dataclass
class CleanupReport:
    """What :func:`remove` deleted, and what it left because it was no longer stale or no longer unpublished."""

    workspaces: int = 0
    releases: int = 0
    objects: int = 0
    bytes: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (an Airflow XCom)."""
        return asdict(self)


def age_text(delta: dt.timedelta) -> str:
    """``3d 4h``, ``5h 12m``, ``42m`` (whole minutes; ``0m`` for less than one)."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def _objects(store: Store, prefix: str) -> list[_Object]:
    """Every object under ``prefix`` with its LastModified (:meth:`Store.list` gives no time)."""
    paginator = store.client.get_paginator("list_objects_v2")
    strip = len(store.key(""))

    def fetch() -> list[_Object]:
        pages = paginator.paginate(Bucket=store.bucket, Prefix=store.key(prefix))
        return [
            _Object(item["Key"][strip:], int(item["Size"]), item["LastModified"])
            for page in pages
            for item in page.get("Contents", [])
        ]

    return store.retrying(f"listing {store.uri(prefix)}", fetch)


def _folders(store: Store, prefix: str) -> list[str]:
    """The names of the folders right under ``prefix`` (``releases/`` -> versions)."""
    paginator = store.client.get_paginator("list_objects_v2")
    root = store.key(prefix)

    def fetch() -> list[str]:
        pages = paginator.paginate(Bucket=store.bucket, Prefix=root, Delimiter="/")
        return [p["Prefix"][len(root) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]

    return store.retrying(f"listing {store.uri(prefix)}", fetch)


def _read_json(store: Store, rel: str) -> dict[str, Any] | None:
    """A small JSON object, or None when it is missing or is no JSON object (it then proves nothing)."""
    found = store.get_tagged(rel)
    if found is None:
        return None
    try:
        data = json.loads(found[0])
    except ValueError:
        log.warning("%s is not JSON: it is ignored", store.uri(rel))
        return None
    return data if isinstance(data, dict) else None


def _segment_of(run_id: str) -> str | None:
    """The run id's key-safe segment (None for an id that cannot name a key: it has no workspace)."""
    try:
        return layout.run_segment(run_id)
    except UsageError:
        return None


@dataclass(frozen=True)
class _Rules:
    """When a folder is stale: idle since ``now - idle``, and never for a kept run (by run id or segment)."""

    idle: dt.timedelta
    now: dt.datetime
    kept: frozenset[str]

    def keeps(self, run_id: str | None, segment: str | None) -> bool:
        return run_id in self.kept or segment in self.kept


def _rules(idle: dt.timedelta, now: dt.datetime | None, keep_runs: Collection[str]) -> _Rules:
    if idle <= dt.timedelta(0):
        raise UsageError(f"idle time {idle} must be above 0 (e.g. 48 hours): a run in progress would look idle")
    kept = set(keep_runs) | {s for s in map(_segment_of, keep_runs) if s}
    return _Rules(idle, now or dt.datetime.now(dt.UTC), frozenset(kept))


def _rejected(store: Store, segment: str, newest: dt.datetime) -> bool:
    """Whether the run's review record says rejected and nothing of its workspace was written after it (a run
    resumed under the same id after a rejection works on, and is judged by its idle time)."""
    key = layout.review_key(segment)
    records = [o for o in _objects(store, key) if o.key == key]
    if not records or newest > records[0].modified:
        return False
    record = _read_json(store, key) or {}
    return record.get("decision") == "rejected"


def _workspace(store: Store, segment: str, objects: list[_Object], rules: _Rules) -> Workspace:
    newest = max(o.modified for o in objects)
    plan = _read_json(store, f"{layout.RUNS}/{segment}/plan.json") or {}
    run_id = str(plan["run_id"]) if plan.get("run_id") else None
    version = str(plan["version"]) if plan.get("version") else None
    stale: str | None = None
    if rules.keeps(run_id, segment):
        stale = None
    elif _rejected(store, segment, newest):
        stale = REJECTED
    elif rules.now - newest >= rules.idle:
        stale = f"idle {age_text(rules.now - newest)}"
    return Workspace(segment, run_id, len(objects), sum(o.size for o in objects), newest, stale, version)


def list_workspaces(
    store: Store, *, idle: dt.timedelta, now: dt.datetime | None = None, keep_runs: Collection[str] = ()
) -> list[Workspace]:
    """Every workspace under ``runs/``, oldest write first, each judged stale or kept as :func:`find_stale` does."""
    return _survey(store, _rules(idle, now, keep_runs))


def _survey(store: Store, rules: _Rules) -> list[Workspace]:
    grouped: dict[str, list[_Object]] = {}
    for obj in _objects(store, f"{layout.RUNS}/"):
        parts = obj.key.split("/")
        if len(parts) > 2 and parts[1]:
            grouped.setdefault(parts[1], []).append(obj)
    found = [_workspace(store, seg, objects, rules) for seg, objects in sorted(grouped.items())]
    return sorted(found, key=lambda w: w.newest)


@dataclass(frozen=True)
class _Claimed:
    """An unpublished version with a claim: whose, and what lies in its folder."""

    version: str
    run_id: str
    objects: list[_Object]

    def folder(self) -> dict[str, Any]:
        """The release fields of a :class:`StaleWorkspace` that removes this folder."""
        return {
            "release": self.version,
            "release_objects": len(self.objects),
            "release_bytes": sum(o.size for o in self.objects),
        }


def _claimed_unpublished(store: Store) -> list[_Claimed]:
    found: list[_Claimed] = []
    for version in _folders(store, layout.releases_root()):
        objects = _objects(store, layout.release_prefix(version) + "/")
        keys = {o.key for o in objects}
        if layout.manifest_key(version) in keys or layout.claim_key(version) not in keys:
            continue  # published, or no claim to say whose it is: not ours to judge
        claim = _read_json(store, layout.claim_key(version)) or {}
        if claim.get("run_id"):
            found.append(_Claimed(version, str(claim["run_id"]), objects))
    return found


def _names(claim: _Claimed, entry: Workspace) -> bool:
    """Whether the claim is the workspace's run's: by run id, or by segment when the workspace has no plan."""
    return claim.run_id == entry.run_id if entry.run_id else _segment_of(claim.run_id) == entry.segment


def _with_release(entry: Workspace, claimed: dict[str, _Claimed], guarded: set[str]) -> StaleWorkspace:
    assert entry.stale is not None
    claim = next((c for c in claimed.values() if _names(c, entry)), None)
    if claim is not None and claim.version in guarded:
        log.info("release folder %s: a workspace in use plans that version; it stays", claim.version)
        claim = None
    run_id = entry.run_id or (claim.run_id if claim else None)
    found = StaleWorkspace(entry.segment, run_id, entry.stale, entry.objects, entry.bytes, entry.newest)
    return replace(found, **claim.folder()) if claim else found


def _abandoned(claim: _Claimed, rules: _Rules, present: set[str], guarded: set[str]) -> StaleWorkspace | None:
    """The claim as an entry of its own when its run has no workspace, is not kept, and claim and files are idle."""
    segment = _segment_of(claim.run_id)
    newest = max(o.modified for o in claim.objects)
    if {claim.run_id, segment} & present or claim.version in guarded or rules.keeps(claim.run_id, segment):
        return None
    if rules.now - newest < rules.idle:
        return None
    return StaleWorkspace(
        segment or claim.run_id, claim.run_id, ABANDONED, 0, 0, newest, workspace=False, **claim.folder()
    )


def find_stale(
    store: Store, *, idle: dt.timedelta, now: dt.datetime | None = None, keep_runs: Collection[str] = ()
) -> list[StaleWorkspace]:
    """The workspaces (and abandoned claims) that may be removed; nothing is written.

    Args:
        store: the store to look in.
        idle: how long nothing under a workspace (or an abandoned claim's folder) must have been written.
        now: the moment ages are measured from (default: now, UTC).
        keep_runs: run ids never judged stale (the caller's own run, the runs in progress).

    Raises:
        UsageError: ``idle`` is not above 0.
    """
    rules = _rules(idle, now, keep_runs)
    workspaces = _survey(store, rules)
    claimed = {c.version: c for c in _claimed_unpublished(store)}
    guarded = {w.version for w in workspaces if w.stale is None and w.version}
    stale = [_with_release(w, claimed, guarded) for w in workspaces if w.stale is not None]
    present = {w.segment for w in workspaces} | {w.run_id for w in workspaces if w.run_id}
    abandoned = (_abandoned(claim, rules, present, guarded) for claim in claimed.values())
    return stale + [entry for entry in abandoned if entry is not None]


def _delete_batch(store: Store, keys: Sequence[str]) -> None:
    store.retrying(
        f"deleting {len(keys)} objects under {store.uri('')}",
        lambda: store.client.delete_objects(
            Bucket=store.bucket, Delete={"Objects": [{"Key": store.key(k)} for k in keys], "Quiet": True}
        ),
    )


def _delete_keys(store: Store, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), _BATCH):
        _delete_batch(store, keys[start : start + _BATCH])


def _remove_workspace(store: Store, entry: StaleWorkspace, report: CleanupReport) -> bool:
    """Delete the workspace unless something was written to it since it was found stale; say if it is gone."""
    assert entry.prefix is not None
    objects = _objects(store, entry.prefix)
    if not objects:
        return True  # removed already (a rerun): nothing to count
    if entry.newest is not None and max(o.modified for o in objects) > entry.newest:
        report.skipped.append(f"{entry.prefix}: written to since it was found stale; it stays")
        log.warning("workspace %s was written to since it was found stale: it stays", store.uri(entry.prefix))
        return False
    _delete_keys(store, [o.key for o in objects])
    report.workspaces += 1
    report.objects += len(objects)
    report.bytes += sum(o.size for o in objects)
    report.removed.append(entry.prefix)
    log.info("removed workspace %s (%d objects, %s)", store.uri(entry.prefix), len(objects), entry.reason)
    return True


def _remove_release(store: Store, entry: StaleWorkspace, version: str, run_id: str, report: CleanupReport) -> None:
    """Delete the claimed release folder if it is still unpublished, its claim still names the run and (for an
    abandoned claim) nothing was written to it since it was found; the claim goes last: the version is free again
    only once its files are gone."""
    claim_key = layout.claim_key(version)
    prefix = layout.release_prefix(version) + "/"
    objects = _objects(store, prefix)
    claim = _read_json(store, claim_key) if any(o.key == claim_key for o in objects) else None
    if store.exists(layout.manifest_key(version)):
        report.skipped.append(f"{prefix}: published meanwhile; it stays")
        log.warning("release %s was published meanwhile: its folder stays", version)
        return
    if claim is None or claim.get("run_id") != run_id:
        if objects:
            report.skipped.append(f"{prefix}: its claim no longer names run {run_id}; it stays")
            log.warning("release folder %s: the claim no longer names run %s; it stays", version, run_id)
        return
    if not entry.workspace and entry.newest is not None and max(o.modified for o in objects) > entry.newest:
        report.skipped.append(f"{prefix}: written to since it was found abandoned; it stays")
        log.warning("release folder %s was written to since it was found abandoned: it stays", version)
        return
    _delete_keys(store, [o.key for o in objects if o.key != claim_key])
    store.delete(claim_key)
    report.releases += 1
    report.objects += len(objects)
    report.bytes += sum(o.size for o in objects)
    report.removed.append(prefix)
    log.info("removed unpublished release folder %s of run %s (%d objects)", store.uri(prefix), run_id, len(objects))


def remove(store: Store, stale: Sequence[StaleWorkspace]) -> CleanupReport:
    """Delete each stale workspace and the unpublished release folder it claimed; return what was deleted.

    Each folder is re-checked right before it goes: a workspace written to since it was found stale stays, and a
    release folder goes only while it has no manifest and its claim still names the run. Removing the same list
    twice deletes nothing the second time.
    """
    report = CleanupReport()
    for number, entry in enumerate(stale, 1):
        log.info("cleaning %d/%d: run %s (%s)", number, len(stale), entry.run_id or entry.segment, entry.reason)
        if entry.prefix is not None and not _remove_workspace(store, entry, report):
            continue
        if entry.release is not None and entry.run_id is not None:
            _remove_release(store, entry, entry.release, entry.run_id, report)
    log.info(
        "clean-up done: %d workspace(s), %d release folder(s), %d objects, %d bytes removed",
        report.workspaces,
        report.releases,
        report.objects,
        report.bytes,
    )
    return report
