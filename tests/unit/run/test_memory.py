"""Giving memory back between the stages of a one-process run."""

from __future__ import annotations

import platform

import pytest

from pipeline.run import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found() -> None:
    assert memory._malloc_trim() is not None
