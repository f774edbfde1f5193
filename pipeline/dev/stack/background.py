"""A detached stack recorded in a state directory: ``cxr stack up|env|down``."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from pipeline.dev.processes import stop_group
from pipeline.dev.stack.info import StackInfo, _Keys, _new_keys
from pipeline.dev.stack.process import _DETACHED, STOP_GRACE_S, _cleanup_sockets, _launch, _Layout, _write_private
from pipeline.errors import StackError

logger = logging.getLogger(__name__)

DEFAULT_STACK_DIR = Path(".cxr/stack")


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (state_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
        yield


def _read_state(state_dir: Path) -> StackInfo | None:
    path = state_dir / "stack.json"
    try:
        return StackInfo.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return None


def _is_our_weed(pid: int, data_dir: str) -> bool:
    """Whether ``pid`` is a live ``weed mini`` that this module started on ``data_dir``."""
    if pid <= 0:
        return False
    if Path("/proc").is_dir():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
    else:
        argv = ["ps", "-o", "command=", "-p", str(pid)]
        ps = subprocess.run(argv, capture_output=True, text=True, check=False)
        cmd = ps.stdout.strip() + " "
    head, sep, _ = cmd.partition(" -logtostderr mini ")  # a zombie's cmdline is empty
    return bool(sep) and head.endswith("weed") and f" -dir={data_dir} " in cmd


def stack_status(state_dir: Path) -> StackInfo | None:
    """Returns the stack recorded in ``state_dir`` if its weed process is alive, else None.

    Args:
        state_dir: The directory given to :func:`stack_up`.
    """
    info = _read_state(state_dir.resolve())
    return info if info is not None and _is_our_weed(info.pid, info.data_dir) else None


def stack_up(state_dir: Path, s3_port: int | None = None) -> StackInfo:
    """Starts a detached stack recorded in ``state_dir``, or returns the one already running there.

    Data goes to ``state_dir/data``, weed's output to ``state_dir/weed.log``, the StackInfo to
    ``state_dir/stack.json`` (0600). After :func:`stack_down` it restarts with the same keys (so the data
    stays readable) and, where still free, the same ports.

    Args:
        state_dir: The stack's state directory, e.g. :data:`DEFAULT_STACK_DIR`.
        s3_port: Fixed S3 port; the previous or a random free port otherwise.

    Raises:
        StackError: weed could not be started.
    """
    state_dir = state_dir.resolve()
    with _locked(state_dir):
        previous = _read_state(state_dir)
        if previous is not None and _is_our_weed(previous.pid, previous.data_dir):
            logger.info("stack already running at %s (pid %s)", previous.endpoint_url, previous.pid)
            return previous
        keys = _new_keys() if previous is None else _Keys(*(getattr(previous, f) for f in _Keys._fields))
        layout = _Layout(state_dir / "data", state_dir / "identities.json", state_dir / "weed.log")
        proc, info = _launch(layout, keys, s3_port, {} if previous is None else previous.ports)
        _DETACHED[proc.pid] = proc
        _write_private(state_dir / "stack.json", info.to_json())
        return info


def stack_down(state_dir: Path) -> bool:
    """Stops the stack recorded in ``state_dir``, keeping its data and keys for the next :func:`stack_up`.

    Args:
        state_dir: The directory given to :func:`stack_up`.

    Returns:
        Whether a running weed process was stopped.

    Raises:
        StackError: The recorded process is not a group leader.
        ProcessGroupError: Its process group survived SIGKILL.
    """
    state_dir = state_dir.resolve()
    with _locked(state_dir):
        info = _read_state(state_dir)
        if info is None:
            return False
        running = _is_our_weed(info.pid, info.data_dir)
        if running:
            if os.getpgid(info.pid) != info.pid:
                raise StackError(
                    f"pid {info.pid} recorded in {state_dir / 'stack.json'} does not lead its process group; "
                    "not signalling it: stop that weed by hand"
                )
            logger.info("stopping local S3 (pid %s)", info.pid)
            stop_group(info.pid, _DETACHED.pop(info.pid, None), STOP_GRACE_S, f"weed of {state_dir}")
        _cleanup_sockets(info.ports, Path(info.data_dir))
        if info.pid != 0:
            _write_private(state_dir / "stack.json", dataclasses.replace(info, pid=0).to_json())
        return running
