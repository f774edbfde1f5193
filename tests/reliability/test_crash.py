"""Crash safety: `cxr run` SIGKILLed at six points (``CXR_FAULT``), then rerun, ends exactly like a clean run.

Throughout, and after every kill, no incomplete version is listed as a release and ``latest.json`` only ever
names a version whose manifest exists.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.publish.latest import read_latest
from pipeline.publish.listing import list_versions
from pipeline.publish.manifest import read_manifest
from pipeline.publish.verify import verify_release
from pipeline.store.storage import Store
from tests.integration.releases import CXR, cxr, make_source, new_store, store_config
from tests.reliability.figures import record

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Manifest fields that name the run or the moment of publication; everything else must match a clean run.
RUN_FIELDS = ("created_by_run", "published_at", "provenance")
#: The one file that names the store's location (its URL); compared with the location replaced.
LOCATED = "croissant.json"
#: (fault point, its n-th pass): mid-extract, mid-upload, mid-convert, after convert before publish,
#: between the manifest and ``latest``, while moving ``latest``.
KILLS = [
    ("extract.member", 30),
    ("store.put", 45),
    ("convert.sample", 20),
    ("release.finish", 1),
    ("release.manifest_written", 1),
    ("publish.latest", 1),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("crash") / "mirror", images=60)


def _run_args(source: Path, uri: str, run_id: str) -> list[str]:
    return ["run", "--source", str(source), "--store", uri, "--release", "v1", "--run-id", run_id]


def _manifest(store: Store) -> dict[str, Any]:
    found = read_manifest(store, "v1")
    assert found is not None, "v1 was not published"
    files = [f for f in found["files"] if f["path"] != LOCATED]
    return {k: v for k, v in found.items() if k not in RUN_FIELDS} | {"files": files}


def _croissant(store: Store) -> str:
    return store.get_bytes(f"releases/v1/{LOCATED}").decode().replace(store.uri(""), "<store>")


@pytest.fixture(scope="module")
def clean(source: Path, s3_stack: StackInfo, s3_client: Any) -> dict[str, Any]:
    bucket = "reliability-crash"
    s3_client.create_bucket(Bucket=bucket)
    store = new_store(s3_stack, bucket, "clean")
    started = time.monotonic()
    done = cxr(_run_args(source, store.uri(""), "clean-run"), s3_stack.env())
    assert done.returncode == 0, done.stderr
    record("crash", "clean_run_s", round(time.monotonic() - started, 1))
    return {**_manifest(store), "croissant": _croissant(store)}


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Manifest fields, and files by path, that differ."""
    files = {f["path"]: f for f in got.get("files", [])}
    wanted = {f["path"]: f for f in want.get("files", [])}
    found = [path for path in sorted(set(files) | set(wanted)) if files.get(path) != wanted.get(path)]
    return found + [k for k in sorted(set(got) | set(want)) if k != "files" and got.get(k) != want.get(k)]


class Watcher(threading.Thread):
    """Polls the store while a run is killed: collects every breach of the release invariants it sees."""

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store, self.stop, self.breaches, self.polls = store, threading.Event(), list[str](), 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.breaches += invariant_breaches(self.store)
            self.polls += 1
            time.sleep(0.05)


def invariant_breaches(store: Store) -> list[str]:
    """What is wrong with the store as a reader sees it: a listed release without its manifest, a bad latest."""
    problems = []
    listing = list_versions(store)
    problems += [f"{v} listed without a manifest" for v in listing.published if read_manifest(store, v) is None]
    latest = read_latest(store)
    if latest is not None:
        if read_manifest(store, str(latest["version"])) is None:
            problems.append(f"latest names {latest['version']}, which has no manifest")
        elif verify_release(store, "latest").problems:
            problems.append(f"latest names {latest['version']}, which does not verify")
    return problems


@pytest.mark.parametrize(
    ("point", "nth", "resume"),
    [(p, n, True) for p, n in KILLS]
    + [
        ("convert.sample", 20, False),
        ("release.finish", 1, False),
    ],
)
def test_killed_run_reruns_to_the_clean_release(
    point: str, nth: int, resume: bool, source: Path, s3_stack: StackInfo, clean: dict[str, Any]
) -> None:
    uri = f"s3://reliability-crash/{point.replace('.', '-')}-{'resume' if resume else 'fresh'}"
    store = Store(store_config(s3_stack, uri))
    watcher = Watcher(store)
    watcher.start()
    killed = subprocess.run(
        [CXR, *_run_args(source, uri, "killed-run")],
        env={**s3_stack.env(), "PATH": "/usr/bin:/bin", "CXR_FAULT": f"{point}:{nth}", "CXR_UPLOAD_WORKERS": "4"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        start_new_session=True,  # the fault kills the process group: cxr and its conversion workers
    )
    watcher.stop.set()
    watcher.join()
    assert killed.returncode == -signal.SIGKILL, f"{point}:{nth} never fired: {killed.stderr[-2000:]}"
    assert watcher.polls > 0
    assert watcher.breaches == []
    assert invariant_breaches(store) == []
    if point != "publish.latest" and point != "release.manifest_written":
        assert list_versions(store).published == []

    started = time.monotonic()
    rerun = cxr(_run_args(source, uri, "killed-run" if resume else "fresh-run"), s3_stack.env())
    recovery = round(time.monotonic() - started, 1)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    record("crash", f"{point}:{nth}:{'same run id' if resume else 'new run id'}:rerun_s", recovery)

    assert differences({**_manifest(store), "croissant": _croissant(store)}, clean) == []
    assert list_versions(store).published == ["v1"]
    assert list_versions(store).incomplete == []
    latest = read_latest(store)
    assert latest is not None
    assert latest["version"] == "v1"
    assert verify_release(store, "v1").ok
    if resume:  # the resumed run cleaned its workspace; a fresh run id leaves only the killed run's workspace
        assert [i.key for i in store.list("runs/")] == []
    else:
        again = cxr(_run_args(source, uri, "third-run"), s3_stack.env())
        assert again.returncode == 0, again.stderr
        assert "release v1: unchanged" in again.stdout
        assert json.loads(store.get_bytes("releases/latest.json"))["version"] == "v1"
