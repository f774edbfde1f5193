"""The resumable sampler: every index once per epoch, a fixed order per (seed, epoch), resumable, shared by ranks,
and with row groups each worker's own (no store needed: any sized dataset, or one that names its row groups)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import UsageError
from pipeline.read.sampler import resumable_sampler


class Grouped:
    """A dataset of ``n`` items stored ``per_group`` to a row group, as ``ReleaseDataset`` names them."""

    def __init__(self, n: int, per_group: int) -> None:
        self.row_groups = np.arange(n, dtype=np.int64) // per_group

    def __len__(self) -> int:
        return len(self.row_groups)


def test_every_index_once_in_an_order_fixed_by_seed_and_epoch() -> None:
    data = list(range(97))
    first = list(resumable_sampler(data, seed=3))
    assert sorted(first) == data
    assert first != data  # shuffled
    assert list(resumable_sampler(data, seed=3)) == first
    assert first != list(resumable_sampler(data, seed=4))
    assert first != list(resumable_sampler(data, seed=3, epoch=1))


def test_the_order_does_not_depend_on_numpys_generator() -> None:
    np.random.seed(1)
    before = list(resumable_sampler(list(range(20)), seed=9))
    np.random.seed(2)
    assert list(resumable_sampler(list(range(20)), seed=9)) == before


def test_resuming_gives_exactly_what_is_left_and_set_epoch_starts_over() -> None:
    whole = list(resumable_sampler(list(range(50)), seed=1, epoch=2))
    resumed = resumable_sampler(list(range(50)), seed=1, epoch=2, start=20)
    assert list(resumed) == whole[20:]
    assert len(resumed) == 30
    resumed.set_epoch(3)
    assert list(resumed) == list(resumable_sampler(list(range(50)), seed=1, epoch=3))
    with pytest.raises(UsageError, match="start=51"):
        resumable_sampler(list(range(50)), seed=1, start=51)


def test_ranks_split_the_epoch_without_overlap_or_padding() -> None:
    parts = [list(resumable_sampler(list(range(10)), seed=5, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for part in parts for i in part) == list(range(10))
    assert sorted(map(len, parts)) == [3, 3, 4]
    dropped = [list(resumable_sampler(list(range(10)), seed=5, rank=r, world_size=3, drop_last=True)) for r in range(3)]
    assert [len(part) for part in dropped] == [3, 3, 3]
    with pytest.raises(UsageError, match="rank=3"):
        resumable_sampler(list(range(10)), seed=5, rank=3, world_size=3)


def test_blocks_keep_row_groups_together_and_give_each_worker_its_own() -> None:
    data = Grouped(64, per_group=8)
    order = list(resumable_sampler(data, seed=2))
    groups = data.row_groups[order]
    assert int(np.count_nonzero(np.diff(groups))) == 7  # each row group's rows come in one run
    batch, workers = 4, 2
    split = list(resumable_sampler(data, seed=2, batch_size=batch, num_workers=workers))
    assert sorted(split) == list(range(64))
    by_worker: dict[int, set[int]] = {}
    for k in range(0, len(split), batch):  # a DataLoader hands batch k to worker k % workers
        by_worker.setdefault(k // batch % workers, set()).update(data.row_groups[split[k : k + batch]].tolist())
    assert not by_worker[0] & by_worker[1]  # no row group read by both workers
    with pytest.raises(UsageError, match="batch_size=0"):
        resumable_sampler(data, seed=2, batch_size=0, num_workers=2)
