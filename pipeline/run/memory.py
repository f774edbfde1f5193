"""Giving memory back between the stages of a run in one process (``cxr run``).

A stage's tables are dropped when it returns, but the allocators keep the freed pages: glibc's heap (fragmented by
many small Python objects) and Arrow's pool. Without handing them back, one process running every stage peaks at
the sum of what the stages left behind rather than at the largest stage. :func:`release_memory` collects garbage,
releases Arrow's unused pool memory and asks glibc to return free heap pages (``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import platform
from collections.abc import Callable

import pyarrow as pa


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    return trim


def release_memory() -> None:
    """Collect garbage and hand the allocators' free memory back to the system (a few milliseconds on a small
    heap; about 0.35 s while Great Expectations' objects are alive, measured in an end-to-end run)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
