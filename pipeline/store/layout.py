"""Every key of the store's layout, in one place. Keys are relative to the store's prefix (:meth:`Store.key`).

::

    releases/latest.json                                     the newest verified release (moves last)
    releases/<version>/                                      one published (or claimed) release
        _claim.json                                          which run writes this version (conditional create)
        manifest.json                                        written last: the version becomes a release
        <path>                                               the release's files (metadata.parquet, parquet/, ...)
    runs/<run>/                                              one run's workspace; deleted when the run publishes
        plan.json, plan.parquet, quarantine.parquet          the plan and the items it leaves out
        data_entry.parquet, bboxes.parquet, split_lists.json curated metadata
        row_quarantine.parquet, metadata_notes.json          rows left out while curating, notes on the variant
        validation/<name>                                    validation results, Data Docs, statistics
        units/<unit>.json                                    one finished conversion unit
        staged.json                                          the release staged for review (its manifest to be)
    raw/shards/<stem>/                                       the raw zone of one archive name (shared by every run)
        images/<sha256>/<name>                               one landed image, named by its bytes' SHA-256
        archives/<sha256>/manifest.parquet                   one row per member of that very archive
        archives/<sha256>/_SUCCESS.json                      written last: that archive is extracted
        seen/<identity>.json                                 location + fingerprint -> archive SHA-256
    raw/runs/<run>/source_manifest.json                      every source file a run read (outlives the run)
    raw/runs/<run>/review.json                               the review's decision on the run's release (outlives it)

``<run>`` is the run id made key-safe (:func:`run_segment`). No key ever holds an empty segment (``//``):
S3-compatible stores such as SeaweedFS fold it, so the key written and the key listed would differ.
:data:`pipeline.config.STORE_LAYOUT_DIRS` names the three top-level folders a store prefix may not lie in.
"""

from __future__ import annotations

import re

from pipeline.errors import UsageError

RELEASES = "releases"
RUNS = "runs"
RAW = "raw"
LATEST = f"{RELEASES}/latest.json"
MANIFEST = "manifest.json"
CLAIM = "_claim.json"
MARKER = "_SUCCESS.json"
#: Files of a release folder that its manifest does not list (the manifest itself and the claim).
UNLISTED = frozenset({MANIFEST, CLAIM})

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _segment(value: str, what: str) -> str:
    """``value`` as one key segment; a name with a slash or nothing in it would change the layout."""
    if not value or "/" in value or value in {".", ".."}:
        raise UsageError(f"{what} {value!r} cannot name a store key: give a non-empty name without '/', '.' or '..'")
    return value


# --- releases ---------------------------------------------------------------------------------------


def releases_root() -> str:
    """``releases/``: what lists every version."""
    return f"{RELEASES}/"


def release_prefix(version: str) -> str:
    """``releases/<version>``."""
    return f"{RELEASES}/{_segment(version, 'release version')}"


def release_key(version: str, path: str) -> str:
    """``releases/<version>/<path>``: one file of a release (``path`` as its manifest lists it)."""
    return f"{release_prefix(version)}/{path.lstrip('/')}"


def manifest_key(version: str) -> str:
    """``releases/<version>/manifest.json``: its presence makes the version a release."""
    return release_key(version, MANIFEST)


def claim_key(version: str) -> str:
    """``releases/<version>/_claim.json``: which run (and input fingerprint) writes this version."""
    return release_key(version, CLAIM)


# --- run workspaces ---------------------------------------------------------------------------------


def run_segment(run_id: str) -> str:
    """The run id made key-safe: every run of characters outside ``[A-Za-z0-9._-]`` becomes one ``_``."""
    segment = _UNSAFE.sub("_", run_id).strip("_")
    if not segment.strip("."):
        raise UsageError(f"run id {run_id!r} cannot name a store key: give one with a letter, digit, '_' or '-'")
    return segment


def run_prefix(run_id: str) -> str:
    """``runs/<run>``: intermediate results of one run, not part of any release."""
    return f"{RUNS}/{run_segment(run_id)}"


def run_key(run_id: str, name: str) -> str:
    """``runs/<run>/<name>``: one file of a run's workspace."""
    return f"{run_prefix(run_id)}/{name.lstrip('/')}"


def plan_key(run_id: str) -> str:
    """``runs/<run>/plan.json``: the plan's settings and counts."""
    return run_key(run_id, "plan.json")


def plan_table_key(run_id: str) -> str:
    """``runs/<run>/plan.parquet``: one row per image of the release, with its split and unit."""
    return run_key(run_id, "plan.parquet")


def quarantine_key(run_id: str) -> str:
    """``runs/<run>/quarantine.parquet``: every item the plan leaves out, with its reason."""
    return run_key(run_id, "quarantine.parquet")


def validation_key(run_id: str, name: str) -> str:
    """``runs/<run>/validation/<name>``: validation results, Data Docs pages and statistics."""
    return run_key(run_id, f"validation/{name}")


def unit_key(run_id: str, unit: str) -> str:
    """``runs/<run>/units/<unit>.json``: written when conversion unit ``unit`` is finished."""
    return run_key(run_id, f"units/{_segment(unit, 'unit')}.json")


# --- raw zone ---------------------------------------------------------------------------------------


def shard_prefix(stem: str) -> str:
    """``raw/shards/<stem>``: every version of the archive named ``<stem>`` (``images_001``)."""
    return f"{RAW}/shards/{_segment(stem, 'archive name')}"


def images_prefix(stem: str) -> str:
    """``raw/shards/<stem>/images/``: what lists the landed images of a shard."""
    return f"{shard_prefix(stem)}/images/"


def raw_image_key(shard: str, sha256: str, name: str) -> str:
    """``<shard>/images/<sha256>/<name>``: an image under shard prefix ``shard`` (:func:`shard_prefix`),
    named by the SHA-256 of the bytes stored there."""
    return f"{shard}/images/{_segment(sha256, 'image sha256')}/{_segment(name, 'image name')}"


def archives_prefix(stem: str) -> str:
    """``raw/shards/<stem>/archives/``: what lists every extracted version of a shard."""
    return f"{shard_prefix(stem)}/archives/"


def archive_prefix(stem: str, archive_sha256: str) -> str:
    """``raw/shards/<stem>/archives/<sha256>``: the manifest and marker of one archive's content."""
    return archives_prefix(stem) + _segment(archive_sha256, "archive sha256")


def archive_manifest_key(archive: str) -> str:
    """``<archive prefix>/manifest.parquet`` (``archive`` from :func:`archive_prefix`)."""
    return f"{archive}/manifest.parquet"


def archive_marker_key(archive: str) -> str:
    """``<archive prefix>/_SUCCESS.json``, written last (``archive`` from :func:`archive_prefix`)."""
    return f"{archive}/{MARKER}"


def seen_key(stem: str, identity: str) -> str:
    """``raw/shards/<stem>/seen/<identity>.json``: the archive SHA-256 last found at one location + fingerprint."""
    return f"{shard_prefix(stem)}/seen/{_segment(identity, 'source identity')}.json"


def staged_key(run_id: str) -> str:
    """``runs/<run>/staged.json``: the release a run staged, waiting for its review (the manifest to be)."""
    return run_key(run_id, "staged.json")


def review_key(run_id: str) -> str:
    """``raw/runs/<run>/review.json``: who approved or rejected the run's release, when and why (outlives the run)."""
    return f"{RAW}/{run_prefix(run_id)}/review.json"


def source_manifest_key(run_id: str) -> str:
    """``raw/runs/<run>/source_manifest.json``: beside the raw zone, so it outlives the run's workspace."""
    return f"{RAW}/{run_prefix(run_id)}/source_manifest.json"
