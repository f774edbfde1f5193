"""Fault injection for the reliability tests: SIGKILL (or freeze) this process at a named point.

``CXR_FAULT=<point>:<n>`` (read once, at import) makes the ``n``-th call of ``point(<point>)`` kill the
process with SIGKILL, as a lost node or a killed container would: no ``finally``, no flush. When the process
leads its own process group (the tests start ``cxr`` with a new session) the whole group is killed, so its
conversion workers die with it, as they do when a pod or an Airflow task's process group is killed; so is the
group of a stage child of ``cxr run`` (:mod:`pipeline.run.isolation`) whose parent leads it. Counts are per
process: a stage child counts from zero.
``CXR_FAULT=<point>:<n>:stop`` freezes it there instead (SIGSTOP, as a paused container): the test changes the
world around it, then lets it go on with SIGCONT. Unset, a call is one comparison. Points (see RELIABILITY.md):
``extract.member``, ``extract.shard`` (a shard landed, none of its requests in flight), ``convert.sample``,
``store.put``, ``release.finish``, ``release.manifest_written``, ``publish.latest``.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "CXR_FAULT"


def _parse(spec: str) -> tuple[str, int, signal.Signals] | None:
    name, _, rest = spec.partition(":")
    count, _, action = rest.partition(":")
    if not name:
        return None
    return name, int(count) if count.isdigit() else 1, signal.SIGSTOP if action == "stop" else signal.SIGKILL


_TARGET = _parse(os.environ.get(ENV, ""))
_counts: dict[str, int] = {}
_lock = threading.Lock()
_role = {"stage_child": False}


def as_stage_child() -> None:
    """Mark this process as a stage child of ``cxr run`` (:mod:`pipeline.run.isolation`): a fault here stops or
    kills its parent's group, as it would have in the parent, and counts from zero."""
    _role["stage_child"] = True
    _counts.clear()


def point(name: str) -> None:
    """Count one pass through ``name``; SIGKILL (or SIGSTOP) this process when ``CXR_FAULT`` names it and its count
    is reached."""
    if _TARGET is None or _TARGET[0] != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        reached = _counts[name] == _TARGET[1]  # once: a frozen process goes on past the point when woken
    if reached:
        group = os.getpgrp()
        if group == os.getpid() or (_role["stage_child"] and group == os.getppid()):
            os.killpg(group, _TARGET[2])
        else:
            os.kill(os.getpid(), _TARGET[2])
