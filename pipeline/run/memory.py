"""Giving memory back between the stages of a run in one process (``cxr run``).

A stage's tables are dropped when it returns, but the allocators keep the freed pages: glibc's heap (fragmented by
many small Python objects) and Arrow's pool. Without handing them back, one process running every stage peaks at
the sum of what the stages left behind rather than at the largest stage. :func:`release_memory` releases Arrow's
unused pool memory and asks glibc to return free heap pages (``malloc_trim``), both a few milliseconds; it collects
garbage first only when the process grew by :data:`COLLECT_GROWTH_MB` since the last collection. A full collection
walks every object of the process: 0.3 s between two units of an end-to-end run, and seconds in a process as large
as a test session's, which is why one after every unit took most of the test suite's time.
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


@dataclass
class _Collected:
    """The resident set (MB) right after the last collection; None before the first."""

    rss_mb: float | None = None


_LAST = _Collected()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    return trim


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
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    if collect:
        _LAST.rss_mb = rss_mb()
    return collect
