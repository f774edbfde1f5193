"""A dry run reports exactly the release the real plan then makes (the same plan and the same version choice),
and leaves nothing but the raw-zone cache behind; the real plan claims that version and keeps its workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import RunConfig
from pipeline.dev.stack import StackInfo
from pipeline.plan import planning, preview
from pipeline.run import tasks
from pipeline.store import layout
from pipeline.store.storage import Store
from tests.integration.releases import make_source, run_config, store_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("preview") / "mirror", images=40)


def _inputs(cfg: RunConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    return shards, tasks.curate_metadata(cfg)


def _keys(store: Store, prefix: str) -> list[str]:
    return [info.key for info in store.list(prefix)]


def test_the_dry_run_reports_the_release_the_real_plan_makes(source: Path, s3_stack: StackInfo, s3_bucket: str) -> None:
    store = Store(store_config(s3_stack, f"s3://{s3_bucket}/cxr"))
    day = {"logical_date": "2026-11-26T02:00:00+00:00"}
    dry = run_config(store, source, "dry", dry_run=True, **day)
    seen = preview.preview(store, dry, *_inputs(dry))
    assert _keys(store, "runs/") == []  # the dry run's workspace is gone
    assert _keys(store, "releases/") == []  # nothing claimed
    real = run_config(store, source, "real", **day)
    made = planning.build_plan(store, real, *_inputs(real))
    said = (seen.version, seen.unchanged, seen.fingerprint, seen.split_mode, seen.counts, seen.quarantined, seen.units)
    done = (made.version, made.unchanged, made.fingerprint, made.split_mode, made.counts, made.quarantined)
    assert said == (*done, len(made.units))
    assert (seen.version, seen.unchanged, seen.dry_run) == ("2026.11.26", False, True)
    assert store.exists(layout.claim_key(made.version))
    assert store.exists(layout.plan_key("real"))
    other = run_config(store, source, "dry-2", dry_run=True, seed=9, **day)
    assert preview.preview(store, other, *_inputs(other)).version == "2026.11.26.2"  # the day is claimed for others
