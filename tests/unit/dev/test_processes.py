"""pipeline.dev.processes: real process groups (``sleep``), stopped with SIGTERM, SIGKILL after the grace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.dev.processes import ProcessGroups, group_alive, start_group, stop_group, wait_gone

#: A leader that starts a grandchild in its group, so that "the group is gone" means more than "the leader exited".
TWO_SLEEPS = ["sh", "-c", "sleep 60 & sleep 60; wait"]


def _members(pgid: int) -> list[int]:
    """PIDs of the running (not zombie) processes of group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(pgrp) == pgid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def _wait_members(pgid: int, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(_members(pgid)) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_started_group_leads_its_own_session_and_logs_to_the_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "echo.log"
    proc = start_group(["sh", "-c", "echo hello; echo oops >&2"], dict(os.environ), log)
    assert proc.wait(timeout=10) == 0
    assert os.getpgid(os.getpid()) != proc.pid
    assert log.read_text().split() == ["hello", "oops"]
    start_group(["sh", "-c", "echo again"], dict(os.environ), log).wait(timeout=10)
    assert log.read_text().split() == ["hello", "oops", "again"]  # appended, not truncated


def test_sigterm_stops_the_whole_group_grandchildren_included(tmp_path: Path) -> None:
    proc = start_group(TWO_SLEEPS, dict(os.environ), tmp_path / "sleep.log")
    _wait_members(proc.pid, 3)
    assert len(_members(proc.pid)) == 3
    assert group_alive(proc.pid, proc)
    started = time.monotonic()
    stop_group(proc.pid, proc, grace=10.0, name="sleeps")
    assert time.monotonic() - started < 5, "sleep stops on SIGTERM: no need to wait for the grace period"
    assert _members(proc.pid) == []
    assert proc.returncode == -15  # SIGTERM, reaped by the stop
    assert not group_alive(proc.pid, proc)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = ["sh", "-c", "trap '' TERM; sleep 60 & sleep 60; wait"]  # the sleeps inherit the ignored TERM
    proc = start_group(stubborn, dict(os.environ), tmp_path / "stubborn.log")
    _wait_members(proc.pid, 3)
    started = time.monotonic()
    stop_group(proc.pid, proc, grace=0.5, name="stubborn")
    assert 0.5 <= time.monotonic() - started < 5
    assert _members(proc.pid) == []
    assert proc.returncode == -9


def test_a_zombie_counts_as_dead(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "0"], start_new_session=True)
    deadline = time.monotonic() + 10
    while _members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state == "Z", "the leader exited and is not reaped yet"
    assert not group_alive(proc.pid)  # without the Popen: nothing reaps it, it still counts as gone
    assert wait_gone(proc.pid, 0.1)
    proc.wait()


def test_a_gone_group_is_dead_and_stopping_it_again_is_harmless(tmp_path: Path) -> None:
    proc = start_group(["true"], dict(os.environ), tmp_path / "true.log")
    proc.wait(timeout=10)
    assert not group_alive(proc.pid, proc)
    stop_group(proc.pid, proc, grace=0.1, name="true")


def test_process_groups_report_the_dead_and_stop_the_rest(tmp_path: Path) -> None:
    groups = ProcessGroups()
    groups.start("sleeper", ["sleep", "60"], dict(os.environ), tmp_path / "sleeper.log")
    groups.start("quitter", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), tmp_path / "quitter.log")
    sleeper = groups.procs["sleeper"]
    deadline = time.monotonic() + 10
    while not groups.dead() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert groups.dead() == ["quitter"]
    groups.stop(grace=5.0)
    assert groups.procs == {}
    assert _members(sleeper.pid) == []


def test_wait_gone_gives_up_on_a_live_group(tmp_path: Path) -> None:
    proc = start_group(["sleep", "60"], dict(os.environ), tmp_path / "sleep.log")
    try:
        assert not wait_gone(proc.pid, 0.2, proc)
    finally:
        stop_group(proc.pid, proc, grace=5.0, name="sleep")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_group_alive_is_false_for_a_group_that_never_existed() -> None:
    assert not group_alive(2**22 + 12345)  # above pid_max's default: nobody leads such a group
