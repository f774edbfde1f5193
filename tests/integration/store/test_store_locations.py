"""Store locations and release names a user gets wrong: `cxr run` refuses them in one line, and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.stack import StackInfo
from tests.integration.releases import cxr, make_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("locations") / "mirror", images=12)


def _keys(s3_client: Any, bucket: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _refused(done: Any, message: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("p//q", "empty segment ('//')"),
        ("p/./q", "a '.' segment"),
        ("p/../q", "a '..' segment"),
        ("p/releases/v1", "inside a store's layout ('releases/' holds published releases)"),
        ("raw/shards", "inside a store's layout ('raw/' holds the raw zone)"),
        ("p/runs/x", "inside a store's layout ('runs/' holds run workspaces)"),
    ],
)
def test_a_bad_store_prefix_is_refused_and_nothing_is_written(
    source: Path, s3_stack: StackInfo, s3_client: Any, s3_bucket: str, prefix: str, message: str
) -> None:
    done = cxr(["run", "--source", str(source), "--store", f"s3://{s3_bucket}/{prefix}"], s3_stack.env())
    _refused(done, message)
    assert _keys(s3_client, s3_bucket) == []


@pytest.mark.parametrize("bucket", ["Bad_Bucket", "ab", "a..b", "192.168.5.4", "bucket-", "xn--bucket"])
def test_an_invalid_bucket_name_is_refused_and_no_bucket_is_made(
    source: Path, s3_stack: StackInfo, s3_client: Any, bucket: str
) -> None:
    before = {b["Name"] for b in s3_client.list_buckets()["Buckets"]}
    done = cxr(["run", "--source", str(source), "--store", f"s3://{bucket}/cxr"], s3_stack.env())
    _refused(done, "is not a valid S3 bucket name")
    assert {b["Name"] for b in s3_client.list_buckets()["Buckets"]} == before


@pytest.mark.parametrize("release", ["latest", "v1\n", "x.json", "../v1"])
def test_a_bad_release_name_is_refused_and_nothing_is_written(
    source: Path, s3_stack: StackInfo, s3_client: Any, s3_bucket: str, release: str
) -> None:
    done = cxr(["run", "--source", str(source), "--store", f"s3://{s3_bucket}/p", "--release", release], s3_stack.env())
    _refused(done, f"release version {release!r}")
    assert _keys(s3_client, s3_bucket) == []
