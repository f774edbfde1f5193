"""Reading part of a large Parquet object by ranged GETs: a unit's plan rows, a file's name and digest columns."""

from __future__ import annotations

import io
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import StoreNotFoundError
from pipeline.store.storage import Store
from pipeline.store.tables import get_matching, open_parquet, put_grouped

pytestmark = pytest.mark.integration


class CountingStore(Store):
    """The real store, counting the bytes its ranged GETs bring back."""

    ranged_bytes = 0
    ranged_gets = 0

    def get_range(self, rel: str, start: int, length: int) -> bytes:
        data = super().get_range(rel, start, length)
        self.ranged_bytes += len(data)
        self.ranged_gets += 1
        return data


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> CountingStore:
    return CountingStore(
        StoreConfig(f"s3://{s3_bucket}/t", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    )


def _plan_rows(units: int, rows_per_unit: int) -> pa.Table:
    """Rows of three splits in shuffled order, each with a 20 KB payload so that a row group weighs something."""
    splits = [("train", "val", "test")[k % 3] for k in range(units * rows_per_unit)]
    unit = [k // 3 % units for k in range(len(splits))]
    order = sorted(range(len(splits)), key=lambda k: (k * 7919) % len(splits))
    return pa.table(
        {
            "image_index": [f"{k:08d}_000.png" for k in order],
            "split": [splits[k] for k in order],
            "unit": [unit[k] for k in order],
            "payload": [os.urandom(20_000) for _ in order],
        }
    )


def test_a_units_rows_come_from_its_own_row_group_alone(store: CountingStore) -> None:
    table = _plan_rows(units=6, rows_per_unit=30)
    put_grouped(store, "plan.parquet", table, ["split", "unit"])
    parquet = pq.ParquetFile(io.BytesIO(store.get_bytes("plan.parquet")))
    keys = {(s, u) for s, u in zip(table["split"].to_pylist(), table["unit"].to_pylist(), strict=True)}
    assert parquet.metadata.num_row_groups == len(keys)  # one row group per (split, unit)

    got = get_matching(store, "plan.parquet", {"split": "val", "unit": 2})
    want = sorted(
        name
        for name, split, unit in zip(*(table[c].to_pylist() for c in ("image_index", "split", "unit")), strict=True)
        if split == "val" and unit == 2
    )
    assert sorted(got["image_index"].to_pylist()) == want
    assert len(want) > 0
    assert got.schema == table.schema
    size = store.head("plan.parquet")
    assert size is not None
    assert store.ranged_bytes < size.size / 4  # the footer and one of 18 row groups, not the object


def test_no_matching_rows_give_an_empty_table_with_the_schema(store: CountingStore) -> None:
    table = _plan_rows(units=2, rows_per_unit=6)
    put_grouped(store, "plan.parquet", table, ["split", "unit"])
    got = get_matching(store, "plan.parquet", {"split": "train", "unit": 9})
    assert got.num_rows == 0
    assert got.schema.names == table.schema.names


def test_columns_of_a_large_object_are_read_without_its_other_columns(store: CountingStore) -> None:
    table = _plan_rows(units=4, rows_per_unit=25)
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=10, compression="none")
    store.put_bytes("big.parquet", buf.getvalue())
    parquet, source = open_parquet(store, "big.parquet")
    names = pa.concat_tables(
        parquet.read_row_group(k, columns=["image_index"], use_threads=False)
        for k in range(parquet.metadata.num_row_groups)
    )
    assert names["image_index"].to_pylist() == table["image_index"].to_pylist()
    assert store.ranged_bytes < len(buf.getvalue()) / 20  # 2 MB of payload never fetched
    assert source.gets == store.ranged_gets


def test_a_missing_object_is_named(store: CountingStore) -> None:
    with pytest.raises(StoreNotFoundError, match=r"s3://.*/t/absent\.parquet does not exist"):
        open_parquet(store, "absent.parquet")
