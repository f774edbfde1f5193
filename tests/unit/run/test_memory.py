"""Giving memory back between the stages of a one-process run."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import weakref

import pytest

from pipeline.run import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found_and_the_allocator_takes_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in memory._GLIBC_ENV:
        monkeypatch.delenv(name, raising=False)
    assert memory._glibc("malloc_trim") is not None
    memory.tune_allocator.cache_clear()
    assert memory.tune_allocator(), "glibc accepted the fixed mmap threshold and the arena cap"
    memory.tune_allocator.cache_clear()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not memory.tune_allocator(), "the environment's own glibc settings win"
    memory.tune_allocator.cache_clear()


def test_every_stage_process_has_its_allocator_tuned() -> None:
    script = (
        "import pipeline.run.tasks; from pipeline.run import memory; memory.tune_allocator(); "
        "print(memory.tune_allocator.cache_info().misses)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "1", "importing the tasks module tuned it: the second call did nothing"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")
def test_image_sized_buffers_are_reused_without_page_faults() -> None:
    """A conversion allocates and frees several 1-3 MB buffers per image. A fixed mmap threshold alone (which stops
    glibc from raising its trim threshold) hands each one back and faults it in again, a tenth of a conversion's
    CPU; tuned, they come back from the heap already mapped."""
    script = (
        "import ctypes, resource, sys; from pipeline.run import memory\n"
        "if sys.argv[1] == 'tuned': memory.tune_allocator()\n"
        "else: ctypes.CDLL(None).mallopt(-3, memory.MMAP_THRESHOLD_BYTES)\n"
        "def touched():\n"
        "    b = bytearray(2 << 20); b[::4096] = b'x' * len(b[::4096]); return b\n"
        "touched()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(200): touched()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)"
    )
    faults = {}
    for mode in ("tuned", "mmap threshold only"):
        env = {k: v for k, v in os.environ.items() if k not in memory._GLIBC_ENV}
        done = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120, env=env, check=False
        )
        assert done.returncode == 0, done.stderr
        faults[mode] = int(done.stdout)
    pages = 200 * (2 << 20) // 4096
    assert faults["mmap threshold only"] > pages // 2, f"every buffer is faulted in again: {faults}"
    assert faults["tuned"] < pages // 20, f"tuned, the buffers are reused: {faults}"


def _collections() -> list[int]:
    """A list that grows by one for each full (generation 2) collection from now on."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(count)
    return seen


def test_garbage_is_collected_only_once_the_process_grew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_LAST", memory._Collected())
    monkeypatch.setattr(memory, "COLLECT_GROWTH_MB", 32.0)
    seen, held = _collections(), bytearray()
    try:
        assert memory.release_memory(), "the first call collects (nothing to compare with)"
        assert not memory.release_memory(), "no growth since: no collection"
        held = bytearray(64 << 20)  # 64 MB touched: the process grew past the threshold
        held[::4096] = b"x" * len(held[::4096])
        assert memory.release_memory(), "grown by 64 MB: collected"
        assert not memory.release_memory()
        assert len(seen) == 2, "exactly the collections release_memory said it made"
    finally:
        gc.callbacks.pop()
        del held


def test_cyclic_garbage_is_freed_when_it_collects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_LAST", memory._Collected())

    class Node:
        def __init__(self) -> None:
            self.me = self

    gc.disable()  # no automatic collection in between
    try:
        ref = weakref.ref(Node())
        assert ref() is not None, "a cycle outlives its last name until a collection"
        assert memory.release_memory()
        assert ref() is None
    finally:
        gc.enable()
