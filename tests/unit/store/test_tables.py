"""JSON and Parquet objects round-trip through a real store unchanged."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.store.storage import ObjectExistsError, Store
from pipeline.store.tables import get_frame, get_json, get_table, parquet_table, put_frame, put_json, records

pytestmark = pytest.mark.integration


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    return Store(
        StoreConfig(f"s3://{s3_bucket}", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    )


def test_json_round_trips_and_is_written_pretty_and_sorted(store: Store) -> None:
    data = {"version": "2026.11.26", "counts": {"train": 3, "test": 1}, "files": [1, 2]}
    put_json(store, "releases/latest.json", data)
    assert get_json(store, "releases/latest.json") == data
    body = store.get_bytes("releases/latest.json").decode()
    assert body == json.dumps(data, indent=2, sort_keys=True) + "\n", "diff-friendly: stable across runs"


def test_a_conditional_json_write_keeps_the_first(store: Store) -> None:
    put_json(store, "releases/v1/_claim.json", {"run_id": "a"}, if_absent=True)
    with pytest.raises(ObjectExistsError):
        put_json(store, "releases/v1/_claim.json", {"run_id": "b"}, if_absent=True)
    assert get_json(store, "releases/v1/_claim.json") == {"run_id": "a"}


def test_a_frame_round_trips_with_its_types(store: Store) -> None:
    frame = pd.DataFrame(
        {"image_index": ["00000001_000.png", "00000002_000.png"], "age": [58, 81], "ok": [True, False]}
    )
    put_frame(store, "runs/r/plan.parquet", frame)
    back = get_frame(store, "runs/r/plan.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert records(back)[1] == {"image_index": "00000002_000.png", "age": 81, "ok": False}


def test_a_table_read_with_filters_returns_only_the_matching_rows(store: Store) -> None:
    frame = pd.DataFrame({"split": ["train", "test", "train"], "unit": [0, 0, 1]})
    schema = pa.schema([("split", pa.string()), ("unit", pa.int32())])
    put_frame(store, "runs/r/plan.parquet", frame, schema)
    table = get_table(store, "runs/r/plan.parquet", [("split", "==", "train"), ("unit", "==", 1)])
    assert table.to_pylist() == [{"split": "train", "unit": 1}]
    assert parquet_table(store.get_bytes("runs/r/plan.parquet")).schema == schema
