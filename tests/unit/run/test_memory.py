"""Giving memory back between the stages of a one-process run."""

from __future__ import annotations

import gc
import platform
import weakref

import pytest

from pipeline.run import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found() -> None:
    assert memory._malloc_trim() is not None


def test_what_a_collection_between_stages_froze_is_collectable_after_the_run() -> None:
    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    alive = weakref.ref(node)
    memory.release_memory()
    assert gc.get_freeze_count() > 0  # the next collections skip what survived this one
    del node
    gc.collect()
    assert alive() is not None  # frozen: a collection between units no longer walks it
    memory.thaw()
    gc.collect()
    assert alive() is None
    assert gc.get_freeze_count() == 0
