"""A release's ``manifest.json``: read it, and create it with a conditional write (the moment of publication).

A release is visible only once ``releases/<version>/manifest.json`` exists; it is created with a
conditional write (``If-None-Match: *``), so two publishers can never both publish one version, and it is
written last, after every other file of the release was checked in the store (:mod:`pipeline.publish.verify`).

Why files are written in place rather than staged under another prefix and copied: the claim
(:func:`pipeline.plan.versions.claim_version`) already makes the version's prefix private to runs with
identical inputs, and nothing that lists or opens releases (:mod:`pipeline.publish.listing`, ``latest.json``,
:mod:`pipeline.read.client`, ``cxr verify``) treats a version without a manifest as a release, so readers never
see a half-written one. A staging prefix would only move that guarantee onto a server-side copy of every file
(the 42 GB of images twice over, as Parquet and WebDataset), doubling the writes, and the copy would not be
atomic either: the manifest would still be the moment of publication. Reruns stay idempotent: same inputs,
same keys, same bytes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import pipeline
from pipeline import nih, provenance
from pipeline.errors import ReleaseConflictError, VerifyError
from pipeline.store import layout
from pipeline.store.layout import release_prefix
from pipeline.store.multipart import UPLOAD_CRC32
from pipeline.store.storage import ObjectExistsError, Store
from pipeline.store.tables import get_json, put_json

if TYPE_CHECKING:  # the readers' client imports this module: it stays light (no plan, convert or pandas)
    from pipeline.config import RunConfig
    from pipeline.plan.planning import Plan

MANIFEST = layout.MANIFEST
#: Objects that may sit in a published release without a manifest entry (the manifest itself; a leftover claim).
UNLISTED_OK = layout.UNLISTED


def manifest_key(version: str) -> str:
    """``releases/<version>/manifest.json``."""
    return layout.manifest_key(version)


def is_published(store: Store, version: str) -> bool:
    """Whether ``version`` is a release: only its manifest makes it one."""
    return store.exists(manifest_key(version))


def read_manifest(store: Store, version: str) -> dict[str, Any] | None:
    """Return a published release's manifest, or None when the version is not published."""
    if not is_published(store, version):
        return None
    manifest: dict[str, Any] = get_json(store, manifest_key(version))
    return manifest


def write_manifest(store: Store, version: str, manifest: dict[str, Any]) -> tuple[str, bool]:
    """Create the manifest (conditional write), re-read it, and return (its sha256, whether this call created it).

    An identical release already there (same input fingerprint) is a no-op: ``created`` is False.

    Raises:
        ReleaseConflictError: another run published other content under ``version`` meanwhile.
        VerifyError: the manifest reads back different from what was written.
    """
    key = manifest_key(version)
    try:
        sha = put_json(store, key, manifest, if_absent=True)
    except ObjectExistsError:
        existing = get_json(store, key)
        if existing.get("input_fingerprint") != manifest.get("input_fingerprint"):
            raise ReleaseConflictError(
                f"release {version} was published meanwhile by run {existing.get('created_by_run')} with other "
                "content; published releases never change: publish under another version"
            ) from None
        return hashlib.sha256(store.get_bytes(key)).hexdigest(), False
    if hashlib.sha256(store.get_bytes(key)).hexdigest() != sha:
        raise VerifyError(
            f"{store.uri(key)} reads back different from what was written; check the store, then rerun the run"
        )
    return sha, True


def wids_index(version: str, split: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """A wids-style shard index for one split (URLs relative to the index file)."""
    shards = [
        f
        for f in files
        if f["kind"] == "wds" and f["path"].startswith(f"{release_prefix(version)}/webdataset/{split}/")
    ]
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": f"{split}",
        "shardlist": [
            {"url": f["path"].rsplit("/", 1)[1], "md5sum": f["md5"], "nsamples": f["rows"], "filesize": f["size"]}
            for f in sorted(shards, key=lambda f: f["path"])
        ],
    }


def build_manifest(cfg: RunConfig, plan: Plan, files: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """Everything a consumer needs to trust and read the release.

    ``label_columns`` names the columns of ``label_vector_order``'s labels, in that order; ``extra`` adds what
    :func:`pipeline.publish.finish.finish` gathered (statistics, accounting, ``image_bytes`` per split...).
    The files' entries lose the upload checksum publishing checked them by (the manifest lists SHA-256s).
    ``provenance`` (:func:`pipeline.provenance.of_run`) names what made the release: pipeline version, DAG bundle or
    git commit, run id and logical date; an approved review adds ``provenance.review``.
    """
    from pipeline.convert.schema import release_schema
    from pipeline.plan.crosscheck import accounting_summary

    return {
        "version": plan.version,
        "input_fingerprint": plan.fingerprint,
        "pipeline_version": pipeline.__version__,
        "created_by_run": plan.run_id,
        "provenance": provenance.of_run(cfg),
        "split_mode": plan.split_mode,
        "counts": plan.counts,
        "images": sum(plan.counts.values()),
        "quarantined": plan.quarantined,
        "quarantine_reasons": plan.quarantine_reasons,
        "subset": plan.subset,
        **accounting_summary(plan.quarantine_reasons, plan.subset),  # quarantined_by_kind, not_in_source
        "labels": list(nih.LABELS),
        "label_vector_order": [*nih.FINDINGS, nih.NO_FINDING],
        "label_columns": [nih.finding_column(label) for label in (*nih.FINDINGS, nih.NO_FINDING)],
        "schema": {f.name: str(f.type) for f in release_schema(plan.annotation_layers())},
        "config": {
            "split_mode": cfg.split_mode,
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "test_fraction": cfg.test_fraction,
            "shard_target_bytes": cfg.shard_target_bytes,
            "min_shards": cfg.min_shards,
        },
        "sources": plan.sources,
        "files": sorted(({k: v for k, v in f.items() if k != UPLOAD_CRC32} for f in files), key=lambda f: f["path"]),
        **extra,
    }
