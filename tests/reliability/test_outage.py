"""Store outage: the S3 endpoint stopped mid-run. Back within the retry budget: the run completes. Gone for
longer: the run fails with a clear error, and nothing half-published is visible once the store is back.

Each test runs its own SeaweedFS (``stack_up``/``stack_down``: same ports, keys and data on restart), never
the session's.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.dev.stack import StackInfo, stack_down, stack_up
from pipeline.publish.latest import read_latest
from pipeline.publish.listing import list_versions
from pipeline.publish.manifest import read_manifest
from pipeline.publish.verify import verify_release
from pipeline.store.storage import Store
from tests.integration.releases import CXR, make_source, store_config
from tests.reliability.figures import record

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[tuple[Path, StackInfo]]:
    state = tmp_path / "stack"
    info = stack_up(state)
    yield state, info
    stack_down(state)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("outage") / "mirror", images=120)


def _start(source: Path, info: StackInfo, uri: str, budget_s: int) -> subprocess.Popen[str]:
    env = {**info.env(), "PATH": "/usr/bin:/bin", "CXR_STORE_RETRY_S": str(budget_s), "CXR_UPLOAD_WORKERS": "2"}
    args = ["-v", "run", "--source", str(source), "--store", uri, "--release", "v1"]
    return subprocess.Popen(
        [CXR, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_store_back_within_the_retry_budget_the_run_completes(source: Path, own_stack: tuple[Path, StackInfo]) -> None:
    state, info = own_stack
    store = Store(store_config(info, "s3://outage/short"))
    store.ensure_bucket()
    started = time.monotonic()
    proc = _start(source, info, store.uri(""), budget_s=120)
    _wait_for(lambda: store.exists("releases/v1/_claim.json"), proc, "the version was claimed")
    down_at = time.monotonic()
    stack_down(state)
    time.sleep(15)  # longer than boto's own 5 attempts (at most ~15 s of back-off): the store's retry must act
    back = stack_up(state)
    outage = time.monotonic() - down_at
    assert back.endpoint_url == info.endpoint_url
    assert proc.poll() is None, "the run did not live through the outage"
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    # Which layer rode the outage out (boto's own attempts or the store's retry budget) depends on what the run
    # was doing when the store went away; both count, and the figure below records how often the store retried.
    assert "release v1: published" in out
    assert verify_release(store, "v1").ok
    assert read_manifest(store, "v1")["accounting"]["input_images"] == 120  # type: ignore[index]
    record("outage", "short_outage_s", round(outage, 1))
    record("outage", "short_outage_store_retries_logged", err.count("retrying in"))
    record("outage", "run_with_outage_s", round(time.monotonic() - started, 1))


def test_store_gone_longer_than_the_budget_fails_clearly_and_publishes_nothing(
    source: Path, own_stack: tuple[Path, StackInfo]
) -> None:
    state, info = own_stack
    store = Store(store_config(info, "s3://outage/long"))
    store.ensure_bucket()
    proc = _start(source, info, store.uri(""), budget_s=5)
    _wait_for(lambda: store.exists("releases/v1/_claim.json"), proc, "the version was claimed")
    down_at = time.monotonic()
    stack_down(state)
    try:
        _, err = proc.communicate(timeout=180)
        failed_after = time.monotonic() - down_at
    finally:
        stack_up(state)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: object store at " + info.endpoint_url + " unavailable while"), last
    assert "check that the endpoint is up, then rerun" in last
    assert read_manifest(store, "v1") is None
    assert read_latest(store) is None
    assert list_versions(store).published == []
    record("outage", "long_outage_budget_s", 5)
    record("outage", "long_outage_failed_after_s", round(failed_after, 1))
