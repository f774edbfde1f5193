"""Dry run: plan a release exactly as a real run would, but claim and publish nothing.

A dry run discovers, extracts (the raw zone is a cache shared by every run), curates and plans; this
module then answers "what would this run publish?" from read-only looks at the store
(``releases/latest.json``, ``releases/<v>/manifest.json`` and ``releases/<v>/_claim.json``), without the
conditional writes of :func:`pipeline.publish.versions.claim_version`. The run's workspace (``runs/<run>/``) is
removed afterwards, so a dry run leaves only the raw-zone cache behind.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import RunConfig
from pipeline.curate import validate
from pipeline.errors import ReleaseConflictError
from pipeline.plan import planning as plan
from pipeline.plan import split, stats
from pipeline.plan.crosscheck import Curated, attach_bboxes, load_rejected, reconcile
from pipeline.publish import versions as publish
from pipeline.store.storage import Store
from pipeline.store.workspace import get_frame, get_json, release_prefix, run_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preview:
    """What a run with these inputs and settings would publish (goes through XCom)."""

    version: str
    unchanged: bool
    fingerprint: str
    split_mode: str
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    units: int = 0
    dry_run: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


def _state(store: Store, version: str, fingerprint: str) -> str:
    """``published`` (same content out), ``taken`` (other content out), ``held`` (claimed for other), ``free``."""
    manifest = publish.read_manifest(store, version)
    if manifest is not None:
        return "published" if manifest.get("input_fingerprint") == fingerprint else "taken"
    claim_key = f"{release_prefix(version)}/_claim.json"
    if store.exists(claim_key) and get_json(store, claim_key).get("fingerprint") != fingerprint:
        return "held"
    return "free"


def would_publish(store: Store, cfg: RunConfig, fingerprint: str) -> tuple[str, bool]:
    """The version :func:`pipeline.publish.versions.claim_version` would choose, and whether it is unchanged; read-only.

    Raises:
        ReleaseConflictError: An explicit ``release`` is taken by other content (the real run would fail too).
    """
    latest = publish.read_latest(store)
    if latest and latest.get("input_fingerprint") == fingerprint and not cfg.force and not cfg.release:
        return str(latest["version"]), True
    if cfg.release:
        state = _state(store, cfg.release, fingerprint)
        if state == "taken" or (state == "held" and not cfg.force):
            raise ReleaseConflictError(f"release {cfg.release} already exists with different content")
        return cfg.release, state == "published"
    base = publish.date_version(cfg.logical_date)
    for n in range(1, publish.MAX_SAME_DAY + 1):
        version = base if n == 1 else f"{base}.{n}"
        state = _state(store, version, fingerprint)
        if state in ("published", "free"):
            return version, state == "published"
    raise ReleaseConflictError(f"more than {publish.MAX_SAME_DAY} different releases on {base}")


def preview(store: Store, cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> Preview:
    """Plan the release like :func:`pipeline.plan.planning.plan_release`, check it, and report it without claiming."""
    prefix = run_prefix(cfg.run_id)
    lists: dict[str, list[str]] = get_json(store, f"{prefix}/split_lists.json")
    boxes = get_frame(store, f"{prefix}/bboxes.parquet")
    entry = get_frame(store, f"{prefix}/data_entry.parquet")
    shard_hashes = plan.shard_archives(shard_results)
    raw = plan.load_raw_images(store, shard_hashes)
    rejected = load_rejected(store, prefix)  # auxiliary-file rows quarantined at curation
    curated_files = Curated(entry, curated["data_entry_file"], boxes, lists, curated.get("bbox_file"), rejected)
    checked = reconcile(raw, curated_files)
    frame, mode = plan.assign(attach_bboxes(checked.frame, boxes), cfg, lists)
    frame, units = plan.cut_units(frame, cfg.shard_target_bytes)
    fp = plan.fingerprint(cfg, mode, shard_hashes, curated["file_sha256"])
    validate.raise_if_blocking(stats.check_release_metadata(frame))
    version, unchanged = would_publish(store, cfg, fp)
    counts = {s: int((frame["split"] == s).sum()) for s in split.SPLITS}
    store.delete_prefix(prefix + "/")
    result = Preview(version, unchanged, fp, mode, counts, len(checked.quarantine), 0 if unchanged else len(units))
    log.info(
        "dry run: would %s release %s, %s, %d quarantined, %d units; nothing claimed or published",
        "keep (unchanged)" if unchanged else "publish",
        version,
        counts,
        result.quarantined,
        result.units,
    )
    return result
