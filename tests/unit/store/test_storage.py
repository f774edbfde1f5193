"""Store on a real S3 endpoint: keys under the prefix, conditional writes, missing objects, listing, deleting."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import StoreNotFoundError
from pipeline.store.storage import ConditionFailedError, ObjectExistsError, Store

pytestmark = pytest.mark.integration


def _config(info: StackInfo, uri: str) -> StoreConfig:
    return StoreConfig(uri, info.endpoint_url, info.access_key_id, info.secret_access_key)


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    return Store(_config(s3_stack, f"s3://{s3_bucket}/team/a"))


def test_objects_live_under_the_store_prefix(store: Store, s3_client: Any) -> None:
    digest = store.put_bytes("releases/v1/x.json", b"{}")
    assert store.uri("releases/v1/x.json") == f"s3://{store.bucket}/team/a/releases/v1/x.json"
    body = s3_client.get_object(Bucket=store.bucket, Key="team/a/releases/v1/x.json")["Body"].read()
    assert body == b"{}"
    assert digest == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_a_conditional_create_never_replaces_an_object(store: Store) -> None:
    store.put_bytes("releases/v1/_claim.json", b"first", if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put_bytes("releases/v1/_claim.json", b"second", if_absent=True)
    assert store.get_bytes("releases/v1/_claim.json") == b"first"


def test_a_conditional_replace_only_replaces_the_version_it_read(store: Store) -> None:
    store.put_bytes("releases/latest.json", b"v1")
    tagged = store.get_tagged("releases/latest.json")
    assert tagged is not None
    assert tagged[0] == b"v1"
    store.put_bytes("releases/latest.json", b"v2", if_match=tagged[1])
    with pytest.raises(ConditionFailedError):
        store.put_bytes("releases/latest.json", b"v3", if_match=tagged[1])  # another run moved it meanwhile
    assert store.get_bytes("releases/latest.json") == b"v2"


def test_a_missing_object_is_none_to_look_ups_and_an_error_to_reads(store: Store) -> None:
    assert store.head("nope") is None
    assert not store.exists("nope")
    assert store.get_tagged("nope") is None
    with pytest.raises(StoreNotFoundError, match="has no such object while reading"):
        store.get_bytes("nope")


def test_listing_and_deleting_a_prefix_touch_nothing_beside_it(store: Store) -> None:
    for rel in ("runs/r1/plan.json", "runs/r1/units/u.json", "runs/r10/plan.json"):
        store.put_bytes(rel, b"x")
    assert sorted(info.key for info in store.list("runs/r1/")) == ["runs/r1/plan.json", "runs/r1/units/u.json"]
    assert store.delete_prefix("runs/r1/") == 2
    assert [info.key for info in store.list("runs/")] == ["runs/r10/plan.json"]
    info = store.head("runs/r10/plan.json")
    assert info is not None
    assert info.size == 1


def test_a_missing_bucket_is_named_with_what_to_do(s3_stack: StackInfo) -> None:
    missing = Store(_config(s3_stack, "s3://no-such-bucket-cxr"))
    with pytest.raises(StoreNotFoundError, match="bucket 'no-such-bucket-cxr' does not exist"):
        missing.require_bucket()


def test_an_object_missing_because_its_bucket_went_away_names_the_bucket(s3_stack: StackInfo, s3_client: Any) -> None:
    """The race a deleted bucket makes: the store answers a read ``NoSuchKey`` (its objects went first), and the
    bucket is gone a moment later. The error must say the bucket was deleted, not that one object is missing."""
    s3_client.create_bucket(Bucket="deleted-meanwhile")
    store = Store(_config(s3_stack, "s3://deleted-meanwhile/cxr"))
    store.put_bytes("raw/a.json", b"{}")
    s3_client.delete_object(Bucket="deleted-meanwhile", Key="cxr/raw/a.json")

    def bucket_goes_away(**_: Any) -> None:  # after the store answered NoSuchKey, before the answer is read
        s3_client.delete_bucket(Bucket="deleted-meanwhile")

    store.client.meta.events.register("after-call.s3.GetObject", bucket_goes_away)
    gone = r"bucket 'deleted-meanwhile' does not exist .*while reading .*a\.json"
    with pytest.raises(StoreNotFoundError, match=gone):
        store.get_bytes("raw/a.json")
