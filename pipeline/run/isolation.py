"""Running one stage of ``cxr run`` in a child process, so that a whole run peaks at its largest stage.

A process that has run a stage keeps most of that stage's peak resident after it: the allocators hold the pages
that a few surviving objects pin (docs/performance.md, Full scale). Airflow runs each task in a process of its own;
``cxr run`` (:func:`pipeline.run.tasks.run_all` with ``isolate=True``) does the same with :func:`run_in_child`:
the stage runs in a forked child, which hands back its JSON-able summary or its error and exits, and the pages go
with it.

What the caller sees is what it would see in one process: the stage's return value, or the same exception type with
the same message (an exception that cannot be pickled comes back as a :class:`PipelineError` with its text). A
child killed by a signal (SIGKILL from the OOM killer or the fault injection) takes the parent down with the same
signal, so a killed stage looks to whoever started ``cxr run`` as a killed ``cxr run``; and a child dies when its
parent does (a ``cxr run`` killed by its user leaves no stage running on).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import platform
import signal
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NoReturn, TypeVar

from pipeline import faults
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

T = TypeVar("T")
#: How long a child may take to exit after it handed its answer back (it has nothing left to do).
EXIT_WAIT_S = 30.0
#: How long a process the stage left running may take to end on SIGTERM before it is killed.
_CHILD_END_S = 5.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def run_in_child(stage: Callable[..., T], *args: Any) -> T:
    """Call ``stage(*args)`` in a forked child process and return its result (it must pickle).

    Raises:
        BaseException: what the stage raised (its type and message), or a :class:`PipelineError` when the child
            ended without an answer (its exit code named).
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(sender, os.getpid(), stage, args), name=f"cxr-{_name(stage)}")
    child.start()
    sender.close()
    try:
        answer = _receive(receiver)
    except BaseException:  # Ctrl-C reaches the child too (same process group); do not leave it behind
        _stop(child)
        raise
    finally:
        receiver.close()
    child.join(EXIT_WAIT_S)
    if answer is None:
        _died(child, stage)
    if child.is_alive():  # this process would wait for it when it exits: end it
        log.warning("the %s stage's process answered but did not exit within %.0f s: ending it", _name(stage),
                    EXIT_WAIT_S)  # fmt: skip
        _stop(child)
    ok, value, where = answer
    if ok:
        return value  # type: ignore[no-any-return]
    raise value from ChildTraceback(where)


class ChildTraceback(Exception):
    """The traceback of a stage's error as the child printed it (the ``__cause__`` of the error raised here, so that
    a bug's log shows where in the stage it happened)."""


def _child_main(sender: Connection, parent: int, stage: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """In the child: run the stage, send ``(True, result, "")`` or ``(False, exception, its traceback)`` back, end
    what the stage left running, and exit at once (the answer is sent; no exit handler has anything left to do)."""
    _die_with(parent)
    faults.as_stage_child()
    try:
        answer: tuple[bool, Any, str] = (True, stage(*args), "")
    except BaseException as exc:  # every outcome goes back to the parent, which raises it
        answer = (False, _portable(exc), traceback.format_exc())
    sender.send(answer)
    sender.close()
    _end_children()
    logging.shutdown()  # flush what the stage logged
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this child when its parent dies (``PR_SET_PDEATHSIG``): a ``cxr run`` killed by
    its user takes its running stage along, as one process would. Linux only; elsewhere nothing."""
    if platform.system() != "Linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        log.warning("this stage will not die with its parent: prctl failed (errno %d)", ctypes.get_errno())
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)


def _end_children() -> None:
    """End the processes the stage left running (a kept pool of decoding workers): at exit, multiprocessing would
    wait for every child, and a pool's workers end only when the pool is shut down."""
    children = multiprocessing.active_children()
    for process in children:
        process.terminate()
    for process in children:
        process.join(_CHILD_END_S)
        if process.is_alive():
            process.kill()
            process.join()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling as the same type with the same message, else a PipelineError with its text."""
    try:
        copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - this process's own object, round-tripped
        if type(copy) is type(exc) and str(copy) == str(exc):
            return exc
    except Exception as failure:  # any failure to round-trip means: send its text instead
        log.debug("%s does not pickle (%s): its text goes back instead", type(exc).__name__, failure)
    return PipelineError(f"{type(exc).__name__}: {exc}")


def _receive(receiver: Connection) -> tuple[bool, Any, str] | None:
    """The child's answer, or None when it ended without one."""
    try:
        return receiver.recv()  # type: ignore[no-any-return]
    except EOFError:
        return None


def _died(child: Any, stage: Callable[..., Any]) -> NoReturn:
    """The child ended without an answer: die of its signal as it did, or raise naming its exit code."""
    code = child.exitcode
    if code is not None and code < 0:
        log.error("the %s stage was killed by signal %d; so is this run", _name(stage), -code)
        os.kill(os.getpid(), -code)  # a fatal signal ends this process here; one Python handles raises from here
    raise PipelineError(f"the {_name(stage)} stage's process ended with exit code {code} before it answered")


def _stop(child: Any) -> None:
    """End a child that is still running: SIGTERM, then SIGKILL."""
    child.join(EXIT_WAIT_S)
    if child.is_alive():
        child.terminate()
        child.join(EXIT_WAIT_S)
    if child.is_alive():
        child.kill()
        child.join()


def _name(stage: Callable[..., Any]) -> str:
    return getattr(stage, "__name__", "stage").lstrip("_")
