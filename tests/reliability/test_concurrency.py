"""Concurrency: two `cxr run` processes publishing one version at the same moment give exactly one release."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.publish.listing import list_versions
from pipeline.publish.manifest import read_manifest
from pipeline.store.storage import Store
from tests.integration.releases import CXR, cxr, make_source, new_store
from tests.reliability.figures import record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("race") / "mirror", images=60)


def _race(
    source: Path, store: Store, stack: StackInfo, seeds: tuple[int, int]
) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, **stack.env(), "CXR_UPLOAD_WORKERS": "4"}
    procs = [
        subprocess.Popen(
            [CXR, "run", "--source", str(source), "--store", store.uri(""), "--release", "v1", "--seed", str(seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in seeds
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _only_v1_published_and_sound(store: Store, stack: StackInfo, workspaces: int = 0) -> None:
    listing = list_versions(store)
    assert listing.published == ["v1"]
    assert listing.incomplete == []
    checked = cxr(["verify", "--store", store.uri(""), "--release", "latest"], stack.consumer_env())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len({info.key.split("/")[1] for info in store.list("runs/")}) == workspaces


def test_two_runs_with_the_same_inputs_publish_one_release(source: Path, s3_stack: StackInfo, s3_bucket: str) -> None:
    store = new_store(s3_stack, s3_bucket, "same")
    runs = _race(source, store, s3_stack, (0, 0))
    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    states = sorted(r.stdout.splitlines()[0] for r in runs)
    assert states == ["release v1: published", "release v1: unchanged (nothing new published)"]
    _only_v1_published_and_sound(store, s3_stack)
    record("concurrency", "same_inputs", states)


def test_two_runs_with_other_inputs_one_wins_and_the_other_is_refused(
    source: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    store = new_store(s3_stack, s3_bucket, "other")
    runs = _race(source, store, s3_stack, (1, 2))
    assert sorted(r.returncode for r in runs) == [0, 1], [r.stderr[-2000:] for r in runs]
    winner, loser = sorted(runs, key=lambda r: r.returncode)
    assert winner.stdout.startswith("release v1: published")
    assert "release v1 already exists" in loser.stderr or "published meanwhile" in loser.stderr
    assert "Traceback" not in loser.stderr
    seed = int(winner.args[winner.args.index("--seed") + 1])
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    assert manifest["config"]["seed"] == seed  # every file is the winner's: `cxr verify` found nothing else
    _only_v1_published_and_sound(store, s3_stack, workspaces=1)  # the refused run's workspace (not a release)
    record("concurrency", "other_inputs", {"winner_seed": seed, "loser": loser.stderr.strip().splitlines()[-1]})
