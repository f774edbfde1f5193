"""Inputs shared by the tests that run real Airflow components: a synthetic mirror and a fresh bucket."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.synth import SynthConfig, synthesize


def synthetic_mirror(factory: pytest.TempPathFactory, name: str, images: int, seed: int) -> Path:
    """A small (32 px) synthetic mirror in its own temp folder."""
    dest = factory.mktemp(name) / "source"
    synthesize(SynthConfig(dest=dest, images=images, image_size=32, seed=seed))
    return dest


def new_bucket(s3_client: Any, prefix: str) -> str:
    """Create a uniquely named bucket and return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
