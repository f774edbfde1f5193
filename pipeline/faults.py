"""Fault injection for the reliability tests: SIGKILL this process at a named point.

``CXR_FAULT=<point>:<n>`` (read once, at import) makes the ``n``-th call of ``point(<point>)`` kill the
process with SIGKILL, as a lost node or a killed container would: no ``finally``, no flush. When the process
leads its own process group (the tests start ``cxr`` with a new session) the whole group is killed, so its
conversion workers die with it, as they do when a pod or an Airflow task's process group is killed. Unset, a
call is one comparison. Points (see RELIABILITY.md): ``extract.member``, ``convert.sample``,
``store.put``, ``release.finish``, ``release.manifest_written``, ``publish.latest``.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "CXR_FAULT"


def _parse(spec: str) -> tuple[str, int] | None:
    name, _, count = spec.partition(":")
    if not name:
        return None
    return name, int(count) if count.isdigit() else 1


_TARGET = _parse(os.environ.get(ENV, ""))
_counts: dict[str, int] = {}
_lock = threading.Lock()


def point(name: str) -> None:
    """Count one pass through ``name``; SIGKILL this process when ``CXR_FAULT`` names it and its count is reached."""
    if _TARGET is None or _TARGET[0] != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        reached = _counts[name] >= _TARGET[1]
    if reached:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
