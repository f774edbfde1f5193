"""pipeline.faults: CXR_FAULT kills the process at the n-th pass through a point, as a lost node would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

SCRIPT = """
import sys
from pipeline import faults
for i in range(3):
    print(f"pass {i}", flush=True)
    faults.point("convert.sample")
    faults.point("store.put")
print("finished", flush=True)
"""


def _run(fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CXR_FAULT"}
    if fault is not None:
        env["CXR_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_a_fault_every_point_is_passed() -> None:
    done = _run(None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "finished"


def test_the_nth_pass_through_the_named_point_is_killed_with_sigkill() -> None:
    done = _run("convert.sample:2")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.splitlines() == ["pass 0", "pass 1"], "killed on the second pass, nothing after it"


def test_a_point_without_a_count_is_killed_on_its_first_pass_and_other_points_are_untouched() -> None:
    assert _run("store.put").stdout.splitlines() == ["pass 0"]
    assert _run("release.finish:1").stdout.splitlines()[-1] == "finished"


def test_a_stop_fault_freezes_the_process_once_and_it_goes_on_when_woken() -> None:
    env = {**os.environ, "CXR_FAULT": "convert.sample:2:stop"}
    run = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
    try:
        stopped = os.waitpid(run.pid, os.WUNTRACED)[1]
        assert os.WIFSTOPPED(stopped)
        assert os.WSTOPSIG(stopped) == signal.SIGSTOP
        os.kill(run.pid, signal.SIGCONT)
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0
    assert out.splitlines() == ["pass 0", "pass 1", "pass 2", "finished"], "frozen once, then every pass goes on"
