"""A deterministic, resumable order of a dataset's indices, each row group kept together for the workers' caches.

    sampler = resumable_sampler(data, seed=7, epoch=0, start=0, batch_size=32, num_workers=2)  # start: resume

The same arguments give the same order on every machine and version (a fixed hash, not a library's generator);
``start`` skips what a rank has consumed already, so that a run resumes mid-epoch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import UsageError

try:
    from torch.utils.data import Sampler
except ImportError as exc:  # pragma: no cover - the consumers' extra installs torch
    raise UsageError("the resumable sampler needs PyTorch: pip install torch (in the `consumers` extra)") from exc

__all__ = ["ResumableSampler", "resumable_sampler"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over uint64 values: a fixed hash, the same on every platform and library version."""
    x = values.astype(np.uint64) + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _keys(seed: int, epoch: int, salt: int, values: np.ndarray) -> np.ndarray:
    """Sort keys of ``values`` for one (seed, epoch, salt): sorting by them gives a well-mixed permutation."""
    state = np.array([seed % (1 << 64)], dtype=np.uint64)
    for part in (epoch, salt):
        state = _mix(state) ^ np.uint64(part % (1 << 64))
    return _mix(values.astype(np.uint64) ^ _mix(state))


def _permutation(groups: np.ndarray, seed: int, epoch: int, block: bool) -> np.ndarray:
    """Every index once, in an order fixed by (seed, epoch); with ``block``, row groups shuffled, then their rows."""
    indices = np.arange(len(groups), dtype=np.int64)
    rows = _keys(seed, epoch, 1, indices)
    if not block:
        return indices[np.argsort(rows, kind="stable")]
    return indices[np.lexsort((rows, groups, _keys(seed, epoch, 2, groups)))]


def _for_workers(order: np.ndarray, groups: np.ndarray, workers: int, batch: int) -> np.ndarray:
    """``order`` rearranged so that batch k (of ``batch`` indices) holds rows of worker k % ``workers``'s row groups:
    each row group goes whole to the worker with the fewest rows so far (a ``DataLoader`` hands batches round)."""
    streams: list[deque[int]] = [deque() for _ in range(workers)]
    for run in np.split(order, np.flatnonzero(np.diff(groups[order])) + 1):
        min(streams, key=len).extend(run.tolist())
    out: list[int] = []
    while any(streams):
        k = len(out) // batch  # the batch being filled: from its worker's stream, topped up from the longest others
        for stream in [streams[k % workers], *sorted(streams, key=len, reverse=True)]:
            while stream and len(out) < (k + 1) * batch:
                out.append(stream.popleft())
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class _Order:
    """How a sampler orders each epoch (the arguments of :func:`resumable_sampler`)."""

    seed: int
    block: bool
    rank: int
    world_size: int
    drop_last: bool
    batch_size: int | None
    num_workers: int

    def part(self, groups: np.ndarray, epoch: int) -> np.ndarray:
        """This rank's indices of one epoch, in order."""
        order = _permutation(groups, self.seed, epoch, self.block)
        n = len(order) // self.world_size * self.world_size if self.drop_last else len(order)
        part = order[n * self.rank // self.world_size : n * (self.rank + 1) // self.world_size]
        if self.block and self.batch_size and self.num_workers > 1:
            part = _for_workers(part, groups, self.num_workers, self.batch_size)
        return part


class ResumableSampler(Sampler[int]):
    """A fixed order of a dataset's indices for one (seed, epoch): this rank's part of it, from ``start`` on.

    The permutation is cut into ``world_size`` contiguous parts (sizes differ by at most one; none is padded), so
    the ranks together see every index exactly once and each rank reads about its share of the row groups.
    ``drop_last`` first drops the permutation's tail so that every rank gets the same count.
    """

    def __init__(self, groups: np.ndarray, order: _Order, epoch: int, start: int) -> None:
        super().__init__()
        if order.world_size < 1 or not 0 <= order.rank < order.world_size:
            raise UsageError(f"rank={order.rank}, world_size={order.world_size}: need 0 <= rank < world_size")
        if order.batch_size is not None and order.batch_size < 1:
            raise UsageError(f"batch_size={order.batch_size}: give the DataLoader's batch size (1 or more) or None")
        self.groups, self.order, self.epoch, self._part = groups, order, epoch, order.part(groups, epoch)
        if not 0 <= start <= len(self._part):
            raise UsageError(f"start={start}: this rank's epoch has {len(self._part)} samples; use 0 to that")
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        """Move to another epoch, from its beginning (``start`` counts only in the epoch the sampler was made for)."""
        if epoch != self.epoch:
            self.epoch, self.start, self._part = epoch, 0, self.order.part(self.groups, epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self._part[self.start :].tolist())

    def __len__(self) -> int:
        return len(self._part) - self.start


def resumable_sampler(dataset: Any, *, seed: int, epoch: int = 0, start: int = 0, block: bool = True, rank: int = 0,
                      world_size: int = 1, drop_last: bool = False, batch_size: int | None = None,
                      num_workers: int = 0) -> ResumableSampler:  # fmt: skip
    """A sampler giving every index of ``dataset`` once per epoch, in an order fixed by its arguments.

    Args:
        dataset: A :class:`ReleaseDataset` (``block`` keeps its row groups together) or any sized dataset.
        seed: The order's seed: the same arguments give the same order on every machine and version.
        epoch: The epoch; each gives another order (``set_epoch`` moves on, as with ``DistributedSampler``).
        start: Samples of this epoch this rank has consumed already (to resume: ``batches_done * batch_size``).
        block: Shuffle row groups, then the rows within each, so that the workers' caches serve their batches.
        rank: This process's rank among ``world_size`` (``torch.distributed.get_rank()``).
        world_size: Processes sharing the epoch; each gets a contiguous part of the permutation, none padded.
        drop_last: Drop the permutation's last ``len % world_size`` samples so that every rank has the same count.
        batch_size, num_workers: The ``DataLoader``'s: with ``block``, each worker's batches then come from row
            groups of its own, so each worker reads about ``1 / num_workers`` of them (else each reads most).

    Raises:
        UsageError: a rank outside the world, a batch size below 1, or ``start`` past this rank's samples.
    """
    groups = getattr(dataset, "row_groups", None)
    groups = np.arange(len(dataset), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    order = _Order(seed, block, rank, world_size, drop_last, batch_size, num_workers)
    return ResumableSampler(groups, order, epoch, start)
