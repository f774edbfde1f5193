"""Process groups of the local tooling: start a command in a group of its own, tell whether it lives, stop it.

The one owner of process-group supervision, used by the local S3 stack (``weed mini``) and by the local Airflow
(api-server, scheduler, dag-processor, Celery workers). Each command starts in a new session, so it leads its
own process group, which also holds everything it starts (Airflow's task processes and their pools) and
outlives our exit. A group is stopped with SIGTERM and, whatever is left of it after a grace period, SIGKILL.

A group is gone when none of its members still runs. A zombie (exited, not yet reaped) counts as gone, except a
zombie leader whose other threads still run: those threads hold its sockets and files open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from pipeline.errors import ProcessGroupError

log = logging.getLogger(__name__)

KILL_WAIT_S = 5.0  # how long a group may take to vanish after SIGKILL
_POLL_S = 0.05
_PROC = Path("/proc")

#: A group to stop: its id (the leader's PID) and, when we started it, the leader's Popen (so that it is reaped).
Group: TypeAlias = tuple[int, subprocess.Popen[bytes] | None]


def start_group(
    argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group; its output is appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of group ``pgid`` (nothing happens when the group is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _running_member(stat: Path, pgid: int) -> bool:
    """Whether the process of ``/proc/<pid>/stat`` belongs to group ``pgid`` and still runs (see the module doc)."""
    try:
        state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        if pgrp != str(pgid):
            return False
        return state != "Z" or len(os.listdir(stat.parent / "task")) > 1
    except (OSError, IndexError, ValueError):
        return False  # the process exited while we looked


def group_alive(pgid: int, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether anything of process group ``pgid`` still runs.

    ``proc`` is the leader when we started it: polling it reaps the leader once it has exited (``waitpid`` only
    succeeds after every thread of it has exited). Without ``/proc`` a group that still exists counts as alive.
    """
    if proc is not None and proc.poll() is None:
        return True
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to someone else
    if not _PROC.is_dir():
        return True
    return any(_running_member(stat, pgid) for stat in _PROC.glob("[0-9]*/stat"))


def wait_gone(pgid: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait up to ``timeout`` seconds for group ``pgid`` to be gone; return whether it is."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid, proc):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def stop_groups(groups: Mapping[str, Group], grace: float) -> None:
    """SIGTERM every group; SIGKILL what is left of each after ``grace`` seconds (all groups share the grace).

    Raises:
        ProcessGroupError: A group was still there :data:`KILL_WAIT_S` seconds after SIGKILL.
    """
    for pgid, _ in groups.values():
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    stubborn = [name for name, (pgid, proc) in groups.items() if not wait_gone(pgid, _left(deadline), proc)]
    for name in stubborn:
        log.warning("%s (process group %d) still runs %.0f s after SIGTERM; killing it", name, groups[name][0], grace)
        signal_group(groups[name][0], signal.SIGKILL)
    survivors = [f"{name} (process group {groups[name][0]})" for name in stubborn if not _gone_after_kill(groups[name])]
    if survivors:
        raise ProcessGroupError(
            f"{', '.join(survivors)} survived SIGKILL: a process is stuck in the kernel (state D in `ps`); "
            "stop it by hand (kill -KILL -- -PGID) once its I/O returns"
        )


def stop_group(pgid: int, proc: subprocess.Popen[bytes] | None, grace: float, name: str) -> None:
    """:func:`stop_groups` for one group."""
    stop_groups({name: (pgid, proc)}, grace)


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _gone_after_kill(group: Group) -> bool:
    return wait_gone(group[0], KILL_WAIT_S, group[1])


@dataclass
class ProcessGroups:
    """Named commands started each as its own process group, watched and stopped together."""

    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        """Start ``argv`` as ``name`` (output appended to ``log_path``)."""
        self.procs[name] = start_group(argv, env, log_path)
        log.info("started %s (pid %d)", name, self.procs[name].pid)

    def dead(self) -> list[str]:
        """Names of the commands whose leader has exited."""
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, grace: float = 20.0) -> None:
        """Stop every group (:func:`stop_groups`); a command is stopped when nothing of its group is left."""
        groups: dict[str, Group] = {name: (proc.pid, proc) for name, proc in self.procs.items()}
        self.procs.clear()
        stop_groups(groups, grace)
