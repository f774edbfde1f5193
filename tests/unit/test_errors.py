"""pipeline.errors: every kind's exit code and retryability, the one mapping the CLI and the DAG share."""

from __future__ import annotations

import errno
import inspect

import pytest

from pipeline import errors
from pipeline.errors import (
    EXIT_FAILED,
    EXIT_LOCAL_DISK,
    EXIT_STORE,
    EXIT_USAGE,
    BadDataError,
    InvalidNameError,
    LocalDiskError,
    PipelineError,
    ReleaseConflictError,
    SourceNotFoundError,
    StoreAccessError,
    StoreNotFoundError,
    StoreRequestError,
    StoreUnavailableError,
    UsageError,
    exit_code,
    is_retryable,
)

KINDS = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, PipelineError) and cls.__module__ == errors.__name__
]


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [
        (UsageError, EXIT_USAGE, False),
        (InvalidNameError, EXIT_USAGE, False),
        (BadDataError, EXIT_FAILED, False),
        (SourceNotFoundError, EXIT_FAILED, False),
        (ReleaseConflictError, EXIT_FAILED, False),
        (StoreAccessError, EXIT_STORE, False),
        (StoreNotFoundError, EXIT_STORE, False),
        (StoreRequestError, EXIT_FAILED, False),
        (StoreUnavailableError, EXIT_FAILED, True),
        (LocalDiskError, EXIT_LOCAL_DISK, False),
    ],
)
def test_each_kind_has_the_exit_code_and_retryability_the_readme_lists(
    kind: type[PipelineError], code: int, retryable: bool
) -> None:
    exc = kind("what failed, where, and what to do")
    assert exit_code(exc) == code
    assert is_retryable(exc) is retryable


@pytest.mark.parametrize("kind", KINDS, ids=[k.__name__ for k in KINDS])
def test_every_kind_says_what_it_is_and_maps_to_a_documented_exit_code(kind: type[PipelineError]) -> None:
    exc = Exception.__new__(kind)  # some kinds take more arguments; the mapping reads the class
    assert kind.__doc__, f"{kind.__name__} has no docstring saying what it means"
    assert exit_code(exc) in (EXIT_FAILED, EXIT_USAGE, EXIT_STORE, EXIT_LOCAL_DISK)
    assert is_retryable(exc) is bool(kind.retryable)
    assert f"\n{exit_code(exc)} " in errors.__doc__, "every exit code is in the module's table"


def test_a_usage_error_is_still_a_value_error_for_callers_that_catch_one() -> None:
    assert issubclass(UsageError, ValueError)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (FileExistsError(errno.EEXIST, "File exists", "/data/mirror"), EXIT_USAGE),
        (OSError(errno.ENOSPC, "No space left on device", "/tmp/x"), EXIT_LOCAL_DISK),
        (OSError(errno.EROFS, "Read-only file system"), EXIT_LOCAL_DISK),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere"), EXIT_FAILED),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), EXIT_FAILED),
    ],
)
def test_the_operating_systems_errors_about_a_users_files_have_exit_codes(exc: OSError, code: int) -> None:
    assert exit_code(exc) == code
    assert not is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), RuntimeError("broken"), KeyError("plan"), TypeError("x"), ConnectionResetError()],
    ids=["ValueError", "RuntimeError", "KeyError", "TypeError", "OSError without a file"],
)
def test_anything_that_is_no_kind_is_a_bug(exc: Exception) -> None:
    assert exit_code(exc) is None  # cxr: exit 70 with the traceback in a file; the DAG: re-raised as it is
    assert not is_retryable(exc)


def test_a_full_disk_becomes_a_local_disk_error_that_says_where_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TMPDIR", "/scratch")
    disk = errors.local_disk_error(OSError(errno.ENOSPC, "No space left on device"), "spooling images_001.zip")
    assert isinstance(disk, LocalDiskError)
    assert str(disk).startswith("spooling images_001.zip: No space left on device in $TMPDIR (/scratch); ")
    assert "point TMPDIR at a writable disk" in str(disk)
    assert errors.local_disk_error(OSError(errno.ENOENT, "No such file"), "reading") is None


def test_one_line_names_the_kind_and_the_first_line() -> None:
    assert errors.one_line(BadDataError("truncated zip\nmember 3 of 9")) == (
        "BadDataError: truncated zip (details below)"
    )
    assert errors.one_line(KeyError()) == "KeyError: (no message)"
