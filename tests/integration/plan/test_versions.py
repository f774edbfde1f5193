"""Claims against the real local S3 endpoint: the version a real run claims, and one winner among racing runs.

(Moved from the publish tests with the version choice.)
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pipeline.config import RunConfig, StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import ReleaseConflictError
from pipeline.plan.versions import claim_version
from pipeline.publish.manifest import write_manifest
from pipeline.store.storage import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    cfg = StoreConfig(f"s3://{s3_bucket}/p", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    return Store(cfg)


def _cfg(store: Store, **kw: Any) -> RunConfig:
    return RunConfig(source="/nowhere", store=store.config, logical_date="2026-11-26T02:00:00+00:00", **kw)


def test_version_from_logical_date_and_suffix_for_other_content(store: Store) -> None:
    assert claim_version(store, _cfg(store), "fp-a") == ("2026.11.26", False)
    write_manifest(store, "2026.11.26", {"input_fingerprint": "fp-a"})
    assert claim_version(store, _cfg(store), "fp-a") == ("2026.11.26", True)
    assert claim_version(store, _cfg(store), "fp-b") == ("2026.11.26.2", False)


def test_explicit_version_with_other_content_is_refused(store: Store) -> None:
    write_manifest(store, "v7", {"input_fingerprint": "one"})
    with pytest.raises(ReleaseConflictError, match="release v7 already exists"):
        claim_version(store, _cfg(store, release="v7"), "two")


def test_concurrent_claims_of_one_version_have_one_winner(store: Store) -> None:
    outcomes: list[str] = []

    def claim(fp: str) -> None:
        try:
            claim_version(store, _cfg(store, release="race"), fp)
            outcomes.append(fp)
        except ReleaseConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=claim, args=(f"fp{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("refused") == 5
