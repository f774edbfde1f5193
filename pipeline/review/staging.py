"""A staged release: every file of a release written and checked, its manifest kept back until a review decides.

:func:`pipeline.publish.finish.stage` writes the release's files under ``releases/<version>/`` (as a release
without review does) and returns a :class:`Staged`; with review on, :func:`save` keeps it in the run's workspace
(``runs/<run>/staged.json``) while the review waits. Approval hands it to :func:`pipeline.publish.finish.publish`
(the manifest, then ``latest``); :func:`reject` removes the staged files and the run's claim, so the version is
free again, and keeps the decision in ``raw/runs/<run>/review.json``. Nothing lists, opens or verifies a version
without a manifest, so a staged release is never visible to a consumer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.review.decision import Decision
from pipeline.store import layout
from pipeline.store.storage import Store
from pipeline.store.tables import get_json, put_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staged:
    """A run's release as staged: the manifest to be written on approval and the run's summary so far.

    ``done`` marks a run with nothing to stage or review (its inputs are already published): ``summary`` says so.
    """

    version: str
    run_id: str
    fingerprint: str
    summary: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Staged:
        return cls(**data)


def save(store: Store, staged: Staged) -> None:
    """Keep the staged release in the run's workspace while its review waits (a rerun writes the same)."""
    put_json(store, layout.staged_key(staged.run_id), staged.to_dict())
    log.info("release %s of run %s is staged for review", staged.version, staged.run_id)


def load(store: Store, run_id: str) -> Staged | None:
    """The release ``run_id`` staged, or None when it staged none (or its review already ended)."""
    key = layout.staged_key(run_id)
    return Staged.from_dict(get_json(store, key)) if store.exists(key) else None


def record_decision(store: Store, staged: Staged, decision: Decision) -> None:
    """Keep the decision beside the run's source manifest, where it outlives the run's workspace."""
    record = {**decision.to_dict(), "version": staged.version, "run_id": staged.run_id}
    put_json(store, layout.review_key(staged.run_id), record)


def reject(store: Store, staged: Staged, decision: Decision) -> dict[str, Any]:
    """Drop a rejected release: its staged files and the run's claim go, the decision stays; return the summary.

    Files are only removed while the version is unpublished and its claim is this run's: a run with the same
    inputs may share the claim and write the same files, and a published release never changes.
    """
    record_decision(store, staged, decision)
    prefix = layout.release_prefix(staged.version) + "/"
    claim_key = layout.claim_key(staged.version)
    claim = get_json(store, claim_key) if store.exists(claim_key) else {}
    if store.exists(layout.manifest_key(staged.version)):
        log.warning("release %s was published meanwhile by another run: its files stay", staged.version)
    elif claim.get("run_id") == staged.run_id and claim.get("fingerprint") == staged.fingerprint:
        removed = len(_delete_all_but(store, prefix, claim_key))
        store.delete(claim_key)  # last: the version is free again only once its files are gone
        log.info("release %s rejected: %d staged file(s) removed, version free again", staged.version, removed)
    else:
        log.warning("release %s: the claim is another run's (same inputs); its files stay", staged.version)
    store.delete_prefix(layout.run_prefix(staged.run_id) + "/")
    log.warning("release %s of run %s was %s", staged.version, staged.run_id, decision.text())
    return {**staged.summary, "published": False, "review": decision.to_dict()}


def _delete_all_but(store: Store, prefix: str, kept: str) -> list[str]:
    """Delete every object under ``prefix`` except ``kept``; return the keys deleted."""
    keys = [info.key for info in store.list(prefix) if info.key != kept]
    for key in keys:
        store.delete(key)
    return keys
