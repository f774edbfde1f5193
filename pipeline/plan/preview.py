"""Dry run: plan a release exactly as a real run would, but claim and publish nothing.

A dry run discovers, extracts (the raw zone is a cache shared by every run), curates and plans; this
module then answers "what would this run publish?" with the same plan (:func:`pipeline.plan.planning.draft`)
and the same version choice (:func:`pipeline.plan.versions.choose_version`, asked without claiming: read-only
looks at ``releases/latest.json``, ``releases/<v>/manifest.json`` and ``releases/<v>/_claim.json``). The run's
workspace (``runs/<run>/``) is removed afterwards, so a dry run leaves only the raw-zone cache behind.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import RunConfig
from pipeline.curate.outcomes import raise_if_blocking
from pipeline.plan import planning, versions
from pipeline.store.layout import run_prefix
from pipeline.store.storage import Store

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


def preview(store: Store, cfg: RunConfig, shard_results: list[dict[str, Any]], curated: dict[str, Any]) -> Preview:
    """Plan the release like :func:`pipeline.plan.planning.build_plan`, check it, and report it without claiming.

    Raises:
        ReleaseConflictError: an explicit ``release`` is taken by other content (the real run would fail too).
    """
    made = planning.draft(store, cfg, shard_results, curated)
    raise_if_blocking(made.checks)
    version, unchanged = versions.choose_version(store, cfg, made.fingerprint, claim=False)
    store.delete_prefix(run_prefix(cfg.run_id) + "/")
    counts, quarantined = made.counts, len(made.checked.quarantine)
    units = 0 if unchanged else len(made.units)
    result = Preview(version, unchanged, made.fingerprint, made.split_mode, counts, quarantined, units)
    log.info(
        "dry run: would %s release %s, %s, %d quarantined, %d units; nothing claimed or published",
        "keep (unchanged)" if unchanged else "publish",
        version,
        counts,
        result.quarantined,
        result.units,
    )
    return result
