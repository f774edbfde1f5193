"""The accounting's digest check (columnar: what the published files hold against metadata.parquet) and shard
counts."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from pipeline.errors import AccountingError
from pipeline.publish.accounting import _tar_counts, check_digests

EXPECTED = {"a.png": "1", "b.png": "2", "c.png": "3"}


def _table(pairs: dict[str, str] | list[tuple[str, str]]) -> pa.Table:
    items = list(pairs.items()) if isinstance(pairs, dict) else pairs
    return pa.table({"image_index": [k for k, _ in items], "sha256": [v for _, v in items]})


def test_exact_files_pass_and_count_each_image_once() -> None:
    found = _table([("c.png", "3"), ("a.png", "1"), ("b.png", "2")])  # any order
    assert check_digests(_table(EXPECTED), found, "Parquet files") == 3


@pytest.mark.parametrize(
    ("found", "words"),
    [
        ([("a.png", "1"), ("b.png", "2")], "1 missing (e.g. ['c.png'])"),
        ([("a.png", "1"), ("b.png", "2"), ("c.png", "3"), ("d.png", "4")], "1 unexpected (e.g. ['d.png'])"),
        (
            [("a.png", "1"), ("b.png", "9"), ("c.png", "3")],
            "1 whose sha256 differs from metadata.parquet's (e.g. ['b.png'])",
        ),
        ([("a.png", "1"), ("b.png", "2"), ("c.png", "3"), ("b.png", "2")], "1 held more than once (e.g. ['b.png'])"),
    ],
)
def test_a_missing_unexpected_wrong_or_repeated_image_fails(found: list[tuple[str, str]], words: str) -> None:
    with pytest.raises(AccountingError, match="WebDataset shards do not hold exactly") as caught:
        check_digests(_table(EXPECTED), _table(found), "WebDataset shards")
    assert words in str(caught.value)
    assert "nothing was published" in str(caught.value)


def test_a_wrong_copy_is_not_hidden_by_a_right_one() -> None:
    found = _table([("a.png", "1"), ("b.png", "2"), ("c.png", "3"), ("a.png", "0")])
    with pytest.raises(AccountingError, match=r"1 whose sha256 differs .*'a.png'"):
        check_digests(_table(EXPECTED), found, "Parquet files")


def test_a_row_without_a_digest_counts_as_wrong() -> None:
    found = pa.table({"image_index": ["a.png", "b.png", "c.png"], "sha256": ["1", None, "3"]})
    with pytest.raises(AccountingError, match=r"1 whose sha256 differs .*'b.png'"):
        check_digests(_table(EXPECTED), found, "Parquet files")


def test_each_shard_is_held_to_its_units_parquet_rows() -> None:
    files = [
        {"path": "releases/v1/webdataset/train/train-000000.tar", "kind": "wds", "rows": 3},
        {"path": "releases/v1/parquet/split=train/train-000000-00.parquet", "kind": "parquet", "rows": 2},
        {"path": "releases/v1/parquet/split=train/train-000000-01.parquet", "kind": "parquet", "rows": 1},
        {"path": "releases/v1/webdataset/val/val-000000.tar", "kind": "wds", "rows": 2},
    ]
    rows = Counter({"train-000000": 3, "val-000000": 1, "test-000000": 4})
    total, wrong = _tar_counts(files, rows)
    assert total == 5
    assert wrong == [
        "releases/v1/webdataset/val/val-000000.tar (2 samples, 1 Parquet rows)",
        "unit test-000000 (4 Parquet rows, no WebDataset shard)",
    ]
    assert _tar_counts(files[:3], Counter({"train-000000": 3})) == (3, [])
