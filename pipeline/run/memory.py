"""Giving memory back between the stages of a run in one process (``cxr run``).

A stage's tables are dropped when it returns, but the allocators keep the freed pages: glibc's heap (fragmented by
many small Python objects) and Arrow's pool. Without handing them back, one process running every stage peaks at
the sum of what the stages left behind rather than at the largest stage. :func:`release_memory` releases Arrow's
unused pool memory and asks glibc to return free heap pages (``malloc_trim``), both a few milliseconds; it collects
garbage first only when the process grew by :data:`COLLECT_GROWTH_MB` since the last collection. A full collection
walks every object of the process: 0.3 s between two units of an end-to-end run, and seconds in a process as large
as a test session's, which is why one after every unit took most of the test suite's time.

:func:`tune_allocator` (called once when :mod:`pipeline.run.tasks` is imported, so in every process that runs a
stage) makes glibc serve every allocation of 4 MiB or more by ``mmap``, so that freeing it hands it back at once,
and caps its arenas at 2. By default glibc raises that threshold to the largest block freed so far (a 16 MiB upload
part), after which such blocks come from per-thread arenas that fragment: a one-process run of 40,000 rows peaked
at 634 MB before (and a collection after every unit) and at 525 MB with it (docs/performance.md, Full scale).
It also keeps up to 64 MiB of free heap instead of 128 KiB before it shrinks the heap (``M_TRIM_THRESHOLD``): an
image's buffers (1-3 MB each, several per image) are then reused instead of given back and faulted in again,
which took a tenth of a conversion's CPU; :func:`release_memory` still gives it all back between units and stages.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

#: Growth of the resident set (MB) since the last collection that makes :func:`release_memory` collect again.
COLLECT_GROWTH_MB = 64.0
#: Allocations of this size or more are mmapped (glibc's ``M_MMAP_THRESHOLD``, kept fixed) ...
MMAP_THRESHOLD_BYTES = 4 << 20  # above a full-size PNG (about 1-3 MB), below an upload part (16 MiB)
#: ... glibc keeps at most this many arenas (``M_ARENA_MAX``) ...
ARENAS = 2
#: ... and shrinks a heap only when this much of it is free at its top (``M_TRIM_THRESHOLD``).
TRIM_THRESHOLD_BYTES = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
_GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


@dataclass
class _Collected:
    """The resident set (MB) right after the last collection; None before the first."""

    rss_mb: float | None = None


_LAST = _Collected()


@functools.cache
def _glibc(name: str) -> Callable[..., int] | None:
    """A function of glibc (``malloc_trim``, ``mallopt``), or None where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    return function


@functools.cache
def tune_allocator() -> bool:
    """Set glibc's fixed mmap and trim thresholds and its arena cap for this process (once); return whether glibc
    took all three. Settings of the environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``,
    ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``) win."""
    mallopt = _glibc("mallopt")
    if mallopt is None or any(name in os.environ for name in _GLIBC_ENV):
        return False
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_ARENA_MAX, ARENAS),
    )
    taken = [bool(mallopt(option, value)) for option, value in settings]  # every one set, also after a refusal
    return all(taken)


def rss_mb() -> float | None:
    """This process's resident set in MB, or None where ``/proc`` does not tell it."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_memory() -> bool:
    """Hand the allocators' free memory back to the system, collecting garbage first when the process grew by
    :data:`COLLECT_GROWTH_MB` since the last collection (always where its size cannot be read); return whether
    it collected."""
    now = rss_mb()
    collect = now is None or _LAST.rss_mb is None or now - _LAST.rss_mb >= COLLECT_GROWTH_MB
    if collect:
        gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)
    if collect:
        _LAST.rss_mb = rss_mb()
    return collect
