"""Shared pytest fixtures, one section per subsystem."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pipeline.dev.stack import LocalS3, StackInfo
from pipeline.store.client import make_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef


# =====================================================================================================
# S3: a local SeaweedFS `weed mini` endpoint on 127.0.0.1 (pipeline/stack.py)
# =====================================================================================================


@pytest.fixture(scope="session")
def s3_stack() -> Iterator[StackInfo]:
    """One loopback S3 endpoint for the whole session: random ports, temp data dir removed afterwards."""
    with LocalS3() as info:
        yield info


@pytest.fixture(scope="session")
def s3_client(s3_stack: StackInfo) -> S3Client:
    """A signed boto3 S3 client for the read/write ``pipeline`` identity."""
    return make_client(s3_stack.store_config())


@pytest.fixture(scope="session")
def s3_consumer_client(s3_stack: StackInfo) -> S3Client:
    """A signed boto3 S3 client for the read/list-only ``consumer`` identity."""
    return make_client(s3_stack.store_config(consumer=True))


@pytest.fixture(scope="session")
def s3_fs(s3_stack: StackInfo) -> Any:
    """A pyarrow S3 filesystem on the local endpoint (pyarrow ignores AWS_ENDPOINT_URL: pass it)."""
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(
        endpoint_override=s3_stack.endpoint_url,
        access_key=s3_stack.access_key_id,
        secret_key=s3_stack.secret_access_key,
        region=s3_stack.region,
    )


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> Iterator[str]:
    """A fresh, uniquely named bucket; emptied and deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        if page.get("Contents"):
            objects: list[ObjectIdentifierTypeDef] = [{"Key": obj["Key"]} for obj in page["Contents"]]
            s3_client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
    s3_client.delete_bucket(Bucket=name)
