"""pipeline.run.isolation: a stage of ``cxr run`` in a child process gives back what it would give in one process,
and its memory goes with the child."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.errors import BlockingValidationError, PipelineError, StoreNotFoundError
from pipeline.run.isolation import EXIT_WAIT_S, ChildTraceback, run_in_child


def _pid_and(value: int) -> tuple[int, int]:
    return os.getpid(), value * 2


def test_the_stage_runs_in_another_process_and_its_result_comes_back() -> None:
    pid, doubled = run_in_child(_pid_and, 21)
    assert pid != os.getpid()
    assert doubled == 42


def _raises(exc: BaseException) -> None:
    raise exc


def test_the_stage_s_error_comes_back_with_its_type_and_message() -> None:
    with pytest.raises(StoreNotFoundError, match="bucket cxr-x does not exist"):
        run_in_child(_raises, StoreNotFoundError("bucket cxr-x does not exist"))
    with pytest.raises(BlockingValidationError, match="3 rows"):
        run_in_child(_raises, BlockingValidationError("3 rows break the suite", report={"rows": 3}))


def test_a_bug_in_the_stage_keeps_the_child_s_traceback_as_its_cause() -> None:
    with pytest.raises(KeyError, match="'labels'") as caught:
        run_in_child(_raises, KeyError("labels"))
    cause = caught.value.__cause__
    assert isinstance(cause, ChildTraceback)
    assert "in _raises" in str(cause), "the log names the stage's own frame, where the bug is"


class _Unpicklable(PipelineError):
    def __init__(self, where: str, count: int) -> None:  # pickling calls cls(*args) with one arg: it fails
        super().__init__(f"{count} problems in {where}")


def test_an_error_that_does_not_pickle_comes_back_as_a_pipeline_error_with_its_text() -> None:
    with pytest.raises(PipelineError, match=r"_Unpicklable: 2 problems in Data_Entry_2017\.csv") as caught:
        run_in_child(_raises, _Unpicklable("Data_Entry_2017.csv", 2))
    assert type(caught.value) is PipelineError


def _exits(code: int) -> None:
    os._exit(code)


def test_a_child_that_exits_without_an_answer_is_an_error_naming_its_exit_code() -> None:
    with pytest.raises(PipelineError, match="exits stage's process ended with exit code 3 before it answered"):
        run_in_child(_exits, 3)


def _leaves_a_pool_running() -> list[int]:
    from concurrent.futures import ProcessPoolExecutor

    kept = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    _KEPT.append(kept)  # as convert keeps its decoding workers for the next unit
    return [kept.submit(os.getpid).result() for _ in range(4)]


_KEPT: list[object] = []


def test_a_stage_that_leaves_workers_running_still_ends_and_takes_them_along() -> None:
    others = set(multiprocessing.active_children())  # e.g. decode workers an earlier test in this process kept
    started = time.monotonic()
    pids = run_in_child(_leaves_a_pool_running)
    assert time.monotonic() - started < EXIT_WAIT_S, "the child ended at once: the parent did not have to end it"
    assert set(multiprocessing.active_children()) <= others, "the stage's child was reaped"
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in set(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in set(pids)), "its workers ended with it"


def _holds(megabytes: int) -> int:
    block = bytearray(megabytes << 20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
    return len(block) >> 20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_the_stage_s_memory_is_the_child_s_not_the_caller_s() -> None:
    before = _peak_mb()
    assert run_in_child(_holds, 300) == 300
    assert _peak_mb() - before < 100, "the caller's peak did not take the stage's 300 MB"
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 >= 300, "the child held them"


SCRIPT = """
import os, sys
from pipeline import faults
from pipeline.run.isolation import EXIT_WAIT_S, ChildTraceback, run_in_child

def stage():
    faults.point("store.put")
    return "finished"

def killed():
    os.kill(os.getpid(), 9)

if sys.argv[1] == "fault":
    print(run_in_child(stage), flush=True)
else:
    run_in_child(killed)
print("after", flush=True)
"""


def _script(tmp_path: Path, mode: str, fault: str | None, new_session: bool) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "stage.py"
    path.write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "CXR_FAULT"} | ({"CXR_FAULT": fault} if fault else {})
    return subprocess.run(
        [sys.executable, str(path), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        start_new_session=new_session,
    )


def test_a_stage_killed_by_a_signal_kills_the_run_with_it(tmp_path: Path) -> None:
    done = _script(tmp_path, "killed", None, new_session=False)
    assert done.returncode == -signal.SIGKILL
    assert "after" not in done.stdout
    assert "killed by signal 9" in done.stderr


def test_a_fault_in_a_stage_child_kills_the_group_its_parent_leads(tmp_path: Path) -> None:
    assert _script(tmp_path, "fault", None, new_session=True).stdout.split() == ["finished", "after"]
    done = _script(tmp_path, "fault", "store.put:1", new_session=True)
    assert done.returncode == -signal.SIGKILL, "the parent died with the child's group, as one process would"
    assert done.stdout == ""
    assert "killed by signal" not in done.stderr, "the group went at once: the parent had no time to report"


ORPHAN = """
import os, sys, time
from pipeline.run.isolation import run_in_child

def stage(path):
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(120)

run_in_child(stage, sys.argv[1])
"""


def test_a_stage_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    script, marker = tmp_path / "orphan.py", tmp_path / "child.pid"
    script.write_text(ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(marker.read_text())
        parent.kill()  # as a user's `kill -9` of cxr: only the parent gets the signal
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists(), "the stage did not run on without its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
