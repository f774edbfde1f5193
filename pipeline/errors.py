"""Exceptions that say what went wrong, where, and whether a retry can help.

Every failure a user can cause is one of these kinds; ``cxr`` maps each kind to an exit code
(:data:`pipeline.cli.commands.EXIT_CODES`) and prints its message as one ``error:`` line, never a traceback. The DAG maps
``retryable`` onto Airflow's behaviour: bad data fails the task at once (``AirflowFailException``), a flaky
endpoint is retried with back-off; either way the task log starts with :func:`one_line`.
"""

from __future__ import annotations

import errno
import os
import tempfile

#: ``OSError`` numbers that say this machine's disk cannot take a write (full, over quota, read-only).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    retryable = False


class BadDataError(PipelineError):
    """The input is wrong (missing file, unreadable archive, failed validation); retrying cannot help."""


class SourceNotFoundError(BadDataError):
    """A required source file is missing."""


class ReleaseConflictError(PipelineError):
    """A release version is taken by different content; it is never overwritten."""


class UsageError(PipelineError, ValueError):
    """A command-line argument, parameter or setting is wrong; fix the command (exit 2)."""


class StoreError(PipelineError):
    """The object store refused a request or lacks what it was asked for; the same request cannot succeed."""


class StoreAccessError(StoreError):
    """The store refused the keys: unknown access key, wrong secret, or no permission for the operation."""


class StoreNotFoundError(StoreError):
    """The store's bucket (or an object a step needs) does not exist."""


class StoreRequestError(StoreError):
    """The store refused a request for another reason (a 4xx answer other than access or not found)."""


class StoreUnavailableError(PipelineError):
    """The object store could not be reached or answered with a server error; a retry may help."""

    retryable = True


class LocalDiskError(PipelineError):
    """A write on this machine failed: no space left, read-only or over quota (``$TMPDIR`` or a local file)."""


def temp_dir_text() -> str:
    """Where temporary files go, as a user would set it: ``$TMPDIR (/path)``."""
    return f"$TMPDIR ({os.environ['TMPDIR']})" if os.environ.get("TMPDIR") else tempfile.gettempdir()


def local_disk_error(exc: OSError, what: str, path: str | None = None) -> LocalDiskError | None:
    """A :class:`LocalDiskError` for a write that failed on a full, over-quota or read-only disk; else None.

    ``what`` says what was being written (``spooling http://.../images_001.zip (45.1 MB)``), ``path`` where.
    """
    if exc.errno not in DISK_ERRNOS:
        return None
    where = path or exc.filename or temp_dir_text()
    return LocalDiskError(
        f"{what}: {exc.strerror or exc} in {where}; free space there, or point TMPDIR at a writable disk with room, "
        "then rerun (a rerun resumes)"
    )


def one_line(exc: BaseException) -> str:
    """``<kind>: <first line of the message>``: what an Airflow task log and a run summary start with."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "(no message)"
    more = " (details below)" if "\n" in text else ""
    return f"{type(exc).__name__}: {first}{more}"
