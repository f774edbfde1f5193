"""Helpers shared by the release tests: a small synthetic source and a publish through every stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig, StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.run import tasks
from pipeline.store.storage import Store

CXR = str(Path(sys.executable).with_name("cxr"))


def make_source(dest: Path, images: int = 60, seed: int = 5) -> Path:
    """A synthetic mirror with the real dataset's quirks, 64 px images (fast)."""
    synthesize(SynthConfig(dest=dest, images=images, image_size=64, seed=seed, quirks=True))
    return dest


def store_config(stack: StackInfo, uri: str, consumer: bool = False) -> StoreConfig:
    """The store at ``uri`` with the pipeline (read/write) or the consumer (read/list) identity."""
    return stack.store_config(uri, consumer=consumer)


def new_store(stack: StackInfo, bucket: str, prefix: str = "cxr") -> Store:
    """A store in a new bucket (created here)."""
    store = Store(store_config(stack, f"s3://{bucket}/{prefix}"))
    store.ensure_bucket()
    return store


def run_config(store: Store, source: Path, run_id: str, **kw: Any) -> RunConfig:
    """A run of every stage into ``store``."""
    return RunConfig(source=str(source), store=store.config, run_id=run_id, upload_workers=4, **kw)


def publish(store: Store, source: Path, run_id: str, **kw: Any) -> dict[str, Any]:
    """Run every stage in this process; return the publish summary."""
    return tasks.run_all(run_config(store, source, run_id, **kw))


def cxr(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``cxr`` command line as a user would, with ``env`` on top of this environment."""
    return subprocess.run(
        [CXR, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )
