"""Pool: fetch a unit's images and process them through a bounded pipeline, decoding in forked workers.

Images are fetched (and checked) ahead in threads; when something must be decoded (a conversion or the
downsized variant), :func:`pipeline.convert.pixels.process_image` runs in a pool of forked worker processes,
since a decode holds the GIL too long to share one process (one pool per process, kept from unit to unit).
Samples come out in row order, each either ready to publish (:class:`Sample`) or left out with its quarantine
row (:class:`Rejected`), so one image that cannot be decoded never blocks the rest of its unit.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import multiprocessing
import os
import platform
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import RunConfig
from pipeline.convert.pixels import Processed, process_image
from pipeline.convert.schema import to_record
from pipeline.errors import UndecodableImageError
from pipeline.layers.schema import Layer
from pipeline.store.storage import Store

log = logging.getLogger(__name__)

#: Quarantine reason code and wording of an image that cannot be decoded (found here, after the plan's cross-check).
UNDECODABLE = "undecodable_image"
CONVERT_QUARANTINE_REASONS = {UNDECODABLE: "image cannot be decoded (found at conversion)"}


@dataclass(frozen=True)
class Sample:
    """One image ready to publish."""

    record: dict[str, Any]
    png: bytes
    small: bytes | None = None


@dataclass(frozen=True)
class Rejected:
    """One image left out of its unit because it cannot be decoded: its quarantine row."""

    row: dict[str, str]


def rejected(row: dict[str, Any], problem: UndecodableImageError) -> Rejected:
    """The quarantine row (``crosscheck.QUARANTINE_COLUMNS``) of a plan row whose image cannot be decoded."""
    member = str(row.get("member") or row["key"])
    log.warning(
        "image %s (member %s of %s) cannot be decoded: %s; quarantined, not published",
        row["image_index"],
        member,
        row["shard"],
        problem,
    )
    reason = f"image cannot be decoded: {problem}"
    return Rejected(
        {
            "source": row["shard"],
            "member": member,
            "image_index": row["image_index"],
            "reason": reason,
            "reason_code": UNDECODABLE,
        }
    )


@functools.cache
def _bound_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for this process (what ``MALLOC_ARENA_MAX=2`` does) before the fetch threads start.

    Image buffers are allocated in the fetch threads and freed in this one; with an arena per thread the
    freed space scatters and RSS creeps up with every unit converted. Capped, it stays flat (see
    ``benchmarks/convert_memory.py``). A no-op where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    m_arena_max = -8  # from glibc's malloc.h
    ctypes.CDLL(None).mallopt(m_arena_max, arenas)


def _pool_context() -> multiprocessing.context.BaseContext | None:
    """The context for decoding workers, or None where no child processes may be started.

    Workers are forked: spawn and forkserver re-import the ``__main__`` module in every worker, which under
    ``airflow tasks run`` imports Airflow there (and fails). They are forked before this unit starts any
    thread (see :class:`Processor`) and only run :func:`pipeline.convert.pixels.process_image`. Daemonic processes
    (Celery's prefork pool) may not have children at all: they process in-thread.
    """
    if multiprocessing.current_process().daemon:
        return None
    return multiprocessing.get_context("fork")


@dataclass(frozen=True)
class UnitRows:
    """One unit's plan rows, kept columnar (a few hundred bytes an image) and turned into dicts a batch at a
    time, so the memory of a unit does not grow with its number of images."""

    table: pa.Table
    layers: tuple[Layer, ...] = ()  # the release's annotation layers: each row's values go into its record

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.table.to_batches(max_chunksize=256):
            yield from batch.to_pylist()

    @property
    def all_gray8(self) -> bool:
        """True when every image is 8-bit single-channel (nothing to decode unless a variant is asked for)."""
        return bool(pc.all(pc.equal(self.table["mode"], "L")).as_py() is not False)


#: The decoding workers of this process, by number of workers: forked at the first unit that needs them and kept
#: for the next units (``cxr run`` converts every unit in one process; an Airflow task converts one).
_WORKERS: dict[int, ProcessPoolExecutor] = {}
#: Below this many images a unit does not fork workers of its own (it uses them when an earlier unit did).
POOL_MIN_IMAGES = 16


def _worker_pool(workers: int, context: multiprocessing.context.BaseContext) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` forked decoders, started (every worker forked) or checked alive.

    Workers are forked once, before the first unit's fetch threads exist, and then serve every unit: a fork per
    unit cost about 50 ms and left units too small to pay for one on a single core. A pool whose worker died
    (``BrokenProcessPool``) is replaced.
    """
    pool = _WORKERS.get(workers)
    if pool is not None:
        try:
            pool.submit(int).result()
            return pool
        except BrokenProcessPool:
            log.warning("a decoding worker died: starting %d new ones", workers)
            pool.shutdown(wait=True, cancel_futures=True)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    pool.submit(int).result()  # fork every worker now, before the fetch threads exist
    _WORKERS[workers] = pool
    return pool


def shutdown_workers() -> None:
    """Stop this process's decoding workers (after its last unit: their memory goes back before publishing)."""
    while _WORKERS:
        _, pool = _WORKERS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


class Processor:
    """Runs :func:`pipeline.convert.pixels.process_image` in the fetching threads, or in this process's pool of
    forked workers when images must be decoded (hashing, CRCs and the inflate of the decodability check release
    the GIL; a decode holds it too long to share one process)."""

    def __init__(self, images: int, all_gray8: bool, variant_size: int | None) -> None:
        self.variant_size = variant_size
        needs_decode = bool(variant_size) or not all_gray8
        workers = min(os.cpu_count() or 1, 8)
        worth = images > POOL_MIN_IMAGES or workers in _WORKERS
        context = _pool_context() if needs_decode and workers > 1 and worth else None
        self.pool = _worker_pool(workers, context) if context is not None else None
        self._pending: set[Future[Processed]] = set()

    def run(self, row: dict[str, Any], data: bytes) -> Processed:
        """Process one image in this thread."""
        return process_image(data, row["sha256"], row["key"], self.variant_size)

    def submit(self, row: dict[str, Any], data: bytes) -> Future[Processed]:
        """Process one image in the pool."""
        assert self.pool is not None
        future = self.pool.submit(process_image, data, row["sha256"], row["key"], self.variant_size)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def close(self) -> None:
        """Cancel this unit's images not started yet (the workers stay for the next unit)."""
        for future in list(self._pending):
            future.cancel()


_Fetched = tuple[bytes, "Future[Processed] | None"]


def fetch_samples(store: Store, rows: UnitRows, cfg: RunConfig) -> Iterator[Sample | Rejected]:
    """Yield samples in row order through a bounded pipeline: fetch (and check) ahead in threads, decode in
    processes when something must be decoded."""
    window = max(16, 2 * cfg.upload_workers)
    processor = Processor(len(rows), rows.all_gray8, cfg.variant_size)
    _bound_malloc_arenas()

    def fetch(row: dict[str, Any]) -> _Fetched:
        data = store.get_bytes(row["key"])
        return data, None if processor.pool is not None else _settled(processor, row, data)

    fetching: deque[tuple[dict[str, Any], Future[_Fetched]]] = deque()
    processing: deque[tuple[dict[str, Any], bytes, Future[Processed]]] = deque()

    def advance() -> None:
        row, fetched = fetching.popleft()
        data, done = fetched.result()
        processing.append((row, data, processor.submit(row, data) if done is None else done))

    try:
        with ThreadPoolExecutor(max_workers=cfg.upload_workers, thread_name_prefix="fetch") as pool:
            for row in rows:
                fetching.append((row, pool.submit(fetch, row)))
                while len(fetching) > window or (fetching and fetching[0][1].done()):
                    advance()
                while len(processing) > window or (processing and processing[0][2].done()):
                    yield _sample(*processing.popleft(), rows.layers)
            while fetching:
                advance()
            while processing:
                yield _sample(*processing.popleft(), rows.layers)
    finally:
        processor.close()


def _settled(processor: Processor, row: dict[str, Any], data: bytes) -> Future[Processed]:
    """Process one image in this thread; its outcome (result or an undecodable image) as a done future."""
    done: Future[Processed] = Future()
    try:
        done.set_result(processor.run(row, data))
    except UndecodableImageError as exc:
        done.set_exception(exc)
    return done


def _sample(
    row: dict[str, Any], data: bytes, future: Future[Processed], layers: tuple[Layer, ...]
) -> Sample | Rejected:
    try:
        done = future.result()
    except UndecodableImageError as exc:
        return rejected(row, exc)
    record = to_record(row, done.sha256, done.converted, layers)
    return Sample(record, data if done.png is None else done.png, done.small)
