"""The accounting's digest tally: what the published files hold, folded in one file at a time."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.errors import AccountingError
from pipeline.publish.accounting import _DigestTally, _tar_counts

EXPECTED = {"a.png": "1", "b.png": "2", "c.png": "3"}


def test_exact_files_pass_and_count_each_image_once() -> None:
    tally = _DigestTally(EXPECTED)
    tally.add({"a.png": "1", "b.png": "2"})
    tally.add({"c.png": "3"})
    assert tally.check("Parquet files") == 3


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ([{"a.png": "1", "b.png": "2"}], "1 missing (e.g. ['c.png'])"),
        ([{"a.png": "1", "b.png": "2", "c.png": "3"}, {"d.png": "4"}], "1 unexpected (e.g. ['d.png'])"),
        (
            [{"a.png": "1", "b.png": "9"}, {"c.png": "3"}],
            "1 whose sha256 differs from metadata.parquet's (e.g. ['b.png'])",
        ),
    ],
)
def test_a_missing_unexpected_or_wrong_image_fails(files: list[dict[str, str]], words: str) -> None:
    tally = _DigestTally(EXPECTED)
    for found in files:
        tally.add(found)
    with pytest.raises(AccountingError, match="WebDataset shards do not hold exactly") as caught:
        tally.check("WebDataset shards")
    assert words in str(caught.value)


def test_a_wrong_copy_in_a_later_file_is_not_hidden_by_a_right_one() -> None:
    tally = _DigestTally(EXPECTED)
    tally.add({"a.png": "1", "b.png": "2", "c.png": "3"})
    tally.add({"a.png": "0"})
    with pytest.raises(AccountingError, match=r"1 whose sha256 differs .*'a.png'"):
        tally.check("Parquet files")


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
