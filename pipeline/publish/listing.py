"""Which releases a store holds: the versions under ``releases/``, ``latest`` resolved, a release's parent.

Only a manifest makes a version a release: versions that were claimed or half-written by a run (no
manifest) are listed apart as *incomplete* and are never resolved, opened or named as a parent.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import check_version, check_version_arg
from pipeline.errors import InvalidNameError, LatestPointerError, ReleaseNotFoundError
from pipeline.publish.latest import LATEST, read_latest, version_key
from pipeline.publish.manifest import is_published
from pipeline.store import layout
from pipeline.store.storage import Store


@dataclass(frozen=True)
class Listing:
    """Versions under ``releases/``: published (manifest present) and incomplete (claimed or being written)."""

    published: list[str]
    incomplete: list[str]


def _version_dirs(store: Store) -> list[str]:
    paginator = store.client.get_paginator("list_objects_v2")
    root = store.key(layout.releases_root())

    def names() -> list[str]:
        pages = paginator.paginate(Bucket=store.bucket, Prefix=root, Delimiter="/")
        return [p["Prefix"][len(root) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]

    return store.retrying(f"listing {store.uri('releases/')}", names)


def list_versions(store: Store) -> Listing:
    """Every version directory of the store, in name order (oldest first); only manifests make a version published."""
    published: list[str] = []
    incomplete: list[str] = []
    for version in sorted(_version_dirs(store), key=version_key):
        (published if is_published(store, version) else incomplete).append(version)
    return Listing(published, incomplete)


def parent_of(store: Store, version: str) -> str | None:
    """The newest published version that sorts before ``version`` (None for the first release)."""
    older = [v for v in list_versions(store).published if version_key(v) < version_key(version)]
    return older[-1] if older else None


def resolve_version(store: Store, version: str) -> str:
    """Turn ``latest`` into the version ``releases/latest.json`` names; other valid names pass through.

    Raises:
        InvalidNameError: ``version`` is neither ``latest`` nor a valid release name (``../v1``, ``a/b``...).
        ReleaseNotFoundError: ``latest`` was asked for and nothing is published yet.
        LatestPointerError: ``latest.json`` names something that is not a release name.
    """
    if check_version_arg(version) != "latest":
        return version
    latest = read_latest(store)
    if latest is None:
        raise ReleaseNotFoundError(f"nothing is published in {store.uri('releases/')} yet (no latest.json)")
    named = str(latest.get("version"))
    try:
        return check_version(named)
    except InvalidNameError:
        raise LatestPointerError(
            f"{store.uri(LATEST)} names {named!r}, which is not a release name: the pointer is damaged; open a "
            "release by its version (`cxr releases list`), and publish again to repair the pointer"
        ) from None
