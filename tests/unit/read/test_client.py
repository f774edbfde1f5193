"""The consumer client without a store: which files a handle reads, refusals of bad arguments, engine settings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from pipeline.errors import UsageError, VerifyError
from pipeline.read.client import Release, ReleaseClient

FILES = [
    {"path": "webdataset/train/shard-000001.tar", "kind": "wds"},
    {"path": "parquet/split=val/part-0.parquet", "kind": "parquet"},
    {"path": "parquet/split=train/part-1.parquet", "kind": "parquet"},
    {"path": "parquet/split=train/part-0.parquet", "kind": "parquet"},
    {"path": "webdataset/train/index.json", "kind": "json"},
    {"path": "webdataset/train/shard-000000.tar", "kind": "wds"},
    {"path": "metadata.parquet", "kind": "parquet"},
]


def _client() -> ReleaseClient:
    return ReleaseClient(
        "s3://bkt/cxr",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="AKID",
        secret_access_key="it's secret",
        region="us-east-1",
    )


def _release(files: list[dict[str, Any]] = FILES) -> Release:
    entries = [{"size": 1, "sha256": "0" * 64, **f} for f in files]
    return Release(_client(), "2026.11.26", {"files": entries, "counts": {"train": 8, "val": "2", "test": 3}})


def test_a_split_selects_its_parquet_parts_and_shards_in_path_order() -> None:
    release = _release()
    assert [f["path"] for f in release.files("parquet", "train")] == [
        "parquet/split=train/part-0.parquet",
        "parquet/split=train/part-1.parquet",
    ]
    assert release.parquet_urls("val") == ["s3://bkt/cxr/releases/2026.11.26/parquet/split=val/part-0.parquet"]
    assert len(release.parquet_urls()) == 3, "metadata.parquet has no pixels and is not a part"
    assert release.counts() == {"train": 8, "val": 2, "test": 3}


def test_pipe_urls_stream_each_shard_in_order_with_this_client() -> None:
    urls = _release().shard_urls("train", how="pipe")
    assert len(urls) == 2
    assert urls[0].startswith("pipe:")
    assert urls[0].endswith(
        " -m pipeline.read.client cat s3://bkt/cxr/releases/2026.11.26/webdataset/train/shard-000000.tar"
    )
    assert urls[1].endswith("shard-000001.tar")


def test_presigned_urls_point_at_the_endpoint_and_expire() -> None:
    asked = time.time()
    (first, _second) = _release().shard_urls("train", expires=600)
    assert first.startswith("http://127.0.0.1:9/bkt/cxr/releases/2026.11.26/webdataset/train/shard-000000.tar?")
    query = parse_qs(urlparse(first).query)
    if "Expires" in query:  # SigV2: the moment it expires
        assert asked + 590 <= int(query["Expires"][0]) <= time.time() + 610
    else:  # SigV4: its lifetime
        assert query["X-Amz-Expires"] == ["600"]


@pytest.mark.parametrize("split", ["training", "Train", "all"])
def test_an_unknown_split_is_a_usage_error_that_names_the_splits(split: str) -> None:
    with pytest.raises(UsageError, match=rf"split '{split}' is not one of train, val, test"):
        _release().files("parquet", split)
    with pytest.raises(UsageError):
        _release().shard_urls(split, how="pipe")


def test_an_unknown_shard_url_kind_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="how='http': use 'presigned' or 'pipe'"):
        _release().shard_urls("train", how="http")


@pytest.mark.parametrize("path", ["parquet/../../../escape.parquet", "/etc/passwd", "parquet\\x.parquet", "a//b"])
def test_a_manifest_path_outside_the_release_folder_is_never_written(tmp_path: Path, path: str) -> None:
    release = _release([{"path": path, "kind": "parquet"}])
    with pytest.raises(VerifyError, match="not a plain relative path; nothing was written for it"):
        release._local_path(tmp_path, path)
    assert list(tmp_path.iterdir()) == []


def test_engine_settings_carry_the_endpoint_and_quote_the_secret() -> None:
    client = _client()
    options = client.storage_options()
    assert options["key"] == "AKID"
    assert options["client_kwargs"] == {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}
    sql = client.duckdb_secret_sql()
    assert "SECRET 'it''s secret'" in sql
    assert "ENDPOINT '127.0.0.1:9'" in sql
    assert "USE_SSL false" in sql
    assert "URL_STYLE 'path'" in sql
