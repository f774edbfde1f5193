"""Review before publish through ``cxr run --review``, as a data engineer drives it, against the real local S3.

While the run waits for its reviewer, the release is staged (its files written and checked) and nothing of it is
visible to a consumer; approving publishes it with the decision in its manifest; rejecting removes the staged files,
frees the version and keeps the reason beside the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import ReleaseNotFoundError
from pipeline.read.client import ReleaseClient
from pipeline.store import layout

pytestmark = pytest.mark.integration
CXR = str(Path(sys.executable).with_name("cxr"))


def _env(stack: StackInfo) -> dict[str, str]:
    return {**os.environ, **stack.env()}


def _keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _client(stack: StackInfo, uri: str) -> ReleaseClient:
    return ReleaseClient(
        uri,
        endpoint_url=stack.endpoint_url,
        access_key_id=stack.consumer_access_key_id,
        secret_access_key=stack.consumer_secret_access_key,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo) -> Path:
    dest = tmp_path_factory.mktemp("review") / "mirror"
    args = ["synth", str(dest), "--images", "36", "--image-size", "64", "--seed", "5"]
    done = subprocess.run([CXR, *args], env=_env(s3_stack), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return dest


def _review_run(source: Path, bucket: str, run_id: str, *extra: str) -> list[str]:
    return [CXR, "run", "--source", str(source), "--store", f"s3://{bucket}/cxr", "--release", "v1", "--review",
            "--run-id", run_id, *extra]  # fmt: skip


def _cxr(args: list[str], stack: StackInfo, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cxr`` to the end, its output captured (``input=`` or ``stdin=`` answer the review's prompt)."""
    kwargs.setdefault("timeout", 300)
    return subprocess.run(args, env=_env(stack), capture_output=True, text=True, check=False, **kwargs)


def test_nothing_is_visible_before_approval_and_the_release_after_it(
    source: Path, s3_stack: StackInfo, s3_client: Any
) -> None:
    s3_client.create_bucket(Bucket="review-approve")
    run = subprocess.Popen(
        _review_run(source, "review-approve", "cli-approve"),
        env=_env(s3_stack),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        staged = f"cxr/{layout.staged_key('cli-approve')}"
        deadline = time.monotonic() + 240
        while not _keys(s3_client, "review-approve", staged) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _keys(s3_client, "review-approve", staged), "the run never staged its release"
        client = _client(s3_stack, "s3://review-approve/cxr")
        files = _keys(s3_client, "review-approve", "cxr/releases/v1/")
        assert any(key.endswith(".tar") for key in files), "the release's files are staged while the review waits"
        assert not _keys(s3_client, "review-approve", "cxr/releases/v1/manifest.json")
        assert not _keys(s3_client, "review-approve", f"cxr/{layout.LATEST}")
        assert client.versions() == []
        with pytest.raises(ReleaseNotFoundError):
            client.open("v1")
        stdout, stderr = run.communicate("y\nlabels checked against the card\n", timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, stderr
    assert "Release v1** is staged by run `cli-approve`" in stdout
    assert "| train |" in stdout
    assert "**Validation**" in stdout
    assert "releases/v1/README.md" in stdout
    assert "release v1: published" in stdout
    assert "review: approved by" in stdout
    assert "labels checked against the card" in stdout
    release = client.open("v1")
    review = release.manifest["provenance"]["review"]
    assert review["decision"] == "approved"
    assert review["via"] == "terminal"
    assert review["comment"] == "labels checked against the card"
    assert client.resolve("latest") == "v1"
    assert not _keys(s3_client, "review-approve", "cxr/runs/"), "the run's workspace goes once it is published"
    record = json.loads(
        s3_client.get_object(Bucket="review-approve", Key=f"cxr/{layout.review_key('cli-approve')}")["Body"].read()
    )
    assert record["decision"] == "approved"
    assert record["version"] == "v1"


def test_a_rejected_release_is_removed_with_its_reason_kept_and_its_version_freed(
    source: Path, s3_stack: StackInfo, s3_client: Any
) -> None:
    s3_client.create_bucket(Bucket="review-reject")
    answer = "n\nthe labels of images_001 look shifted\n"
    done = _cxr(_review_run(source, "review-reject", "cli-reject"), s3_stack, input=answer)
    assert done.returncode == 1, done.stderr  # nothing was published
    assert "release v1: not published: rejected by" in done.stdout
    assert "the labels of images_001 look shifted" in done.stdout
    assert "Traceback" not in done.stderr
    assert _keys(s3_client, "review-reject", "cxr/releases/") == [], "no staged file and no claim is left"
    assert _keys(s3_client, "review-reject", "cxr/runs/") == [], "the rejected run's workspace is gone"
    record_key = f"cxr/{layout.review_key('cli-reject')}"
    record = json.loads(s3_client.get_object(Bucket="review-reject", Key=record_key)["Body"].read())
    assert record["decision"] == "rejected"
    assert record["comment"] == "the labels of images_001 look shifted"
    assert record["via"] == "terminal"
    assert record["version"] == "v1"
    client = _client(s3_stack, "s3://review-reject/cxr")
    assert client.versions() == []

    # the version is free again: a later run approved by a script publishes it
    again = _cxr(_review_run(source, "review-reject", "cli-approved", "--approve"), s3_stack)
    assert again.returncode == 0, again.stderr
    assert client.versions() == ["v1"]
    assert client.open("v1").manifest["provenance"]["review"]["via"] == "--approve"


def test_no_answer_on_the_terminal_rejects(source: Path, s3_stack: StackInfo, s3_client: Any) -> None:
    s3_client.create_bucket(Bucket="review-silent")
    done = _cxr(_review_run(source, "review-silent", "cli-silent"), s3_stack, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert "no answer on the terminal" in done.stdout
    assert _keys(s3_client, "review-silent", "cxr/releases/") == []


def test_approve_without_review_is_refused(source: Path, s3_stack: StackInfo) -> None:
    args = [CXR, "run", "--source", str(source), "--store", "s3://review-flag/cxr", "--approve"]
    done = _cxr(args, s3_stack, timeout=120)
    assert done.returncode == 2
    assert "--approve answers the review of --review" in done.stderr
