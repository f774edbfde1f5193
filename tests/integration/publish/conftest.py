"""Fixtures of the publish tests: an empty store per test, and one real release shared by the package."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.store.storage import Store
from tests.integration import releases


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    """An empty store in a fresh bucket (read/write identity)."""
    cfg = StoreConfig(f"s3://{s3_bucket}/p", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    return Store(cfg)


@pytest.fixture(scope="module")
def released(
    s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """Release ``v1`` of a 60-image synthetic source, published through every stage into a bucket of the test module.

    Each module gets its own (tests of one module put back what they break; other modules' releases never move
    its ``latest``).
    """
    bucket = "publish-" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    source = releases.make_source(tmp_path_factory.mktemp("publish") / "source", images=60, seed=5)
    store = releases.new_store(s3_stack, bucket)
    summary = releases.publish(store, source, "first", release="v1")
    return {"store": store, "source": source, "summary": summary, "uri": f"s3://{bucket}/cxr"}
