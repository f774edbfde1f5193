"""Fixtures of the curate integration tests: the module's own bucket on the session's store, keys in the env."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo


@pytest.fixture(scope="module")
def aws_env(request: pytest.FixtureRequest, s3_stack: StackInfo, s3_client: Any) -> Iterator[None]:
    """Create the test module's ``BUCKET`` and point the ``AWS_*`` variables at the store for the module."""
    s3_client.create_bucket(Bucket=request.module.BUCKET)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_stack.env().items():
            mp.setenv(key, value)
        yield
