"""The error kinds of the pipeline: what went wrong, where, whether a retry can help, and the exit code.

Every failure a user can meet is one of these kinds (stages add theirs under a heading below); each says whether
running the same step again can help (``retryable``) and which exit code ``cxr`` gives it (``exit_code``). Both
the command line and the DAG ask the same two functions, :func:`exit_code` and :func:`is_retryable`:

- ``cxr`` prints the message as one ``error:`` line (never a traceback) and exits with :func:`exit_code`;
  anything that is no kind (``exit_code`` None) is a bug: exit 70, the traceback in a file.
- The DAG fails a task at once (``AirflowFailException``, no retry) for a kind that is not retryable (bad data,
  bad parameters, a conflict), lets Airflow retry with back-off one that is (an unreachable store or source),
  and re-raises a bug with its traceback. Either way the task log starts with :func:`one_line`.

Exit codes of every ``cxr`` command (README, "Exit codes"):

====  =================================================================================================
0     done (``validate``: no blocking failure; ``verify``: every file matches)
1     the run or check failed: bad data, blocking validation, release conflict, ``verify`` mismatch, release not
      published (or rejected in ``cxr run --review``), source missing, store unavailable after retries
      (:class:`PipelineError` and most kinds)
2     bad arguments: options, release names, store location or bucket name, endpoint URL (:class:`UsageError`)
3     the store refused the keys or lacks the bucket or an object (:class:`StoreAccessError`,
      :class:`StoreNotFoundError`)
4     this machine's disk refused a write: ``$TMPDIR`` or a local file full, over quota or read-only
      (:class:`LocalDiskError`)
70    internal error, a bug (sysexits' ``EX_SOFTWARE``): one line naming the file that holds the traceback
130   interrupted
====  =================================================================================================
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import Any

#: ``OSError`` numbers that say this machine's disk cannot take a write (full, over quota, read-only).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})

EXIT_OK = 0
EXIT_FAILED = 1  # the run or check failed: bad data, validation, conflict, mismatch, store unavailable after retries
EXIT_USAGE = 2  # bad arguments: options, release names, store locations, bucket names, endpoint URL
EXIT_STORE = 3  # the store refused the keys (access denied, unknown key, wrong secret) or lacks the bucket (or object)
EXIT_LOCAL_DISK = 4  # this machine's disk refused a write: $TMPDIR (or a local file) full, over quota or read-only
EXIT_INTERNAL = 70  # a bug (sysexits' EX_SOFTWARE): one line, the traceback in a file
EXIT_INTERRUPTED = 130


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    #: Whether running the same step again can succeed (the DAG retries it with back-off).
    retryable = False
    #: What ``cxr`` exits with (see the module's table).
    exit_code = EXIT_FAILED


class BadDataError(PipelineError):
    """The input is wrong (missing file, unreadable archive, failed validation); retrying cannot help."""


class SourceNotFoundError(BadDataError):
    """A required source file is missing."""


class ReleaseConflictError(PipelineError):
    """A release version is taken by different content; it is never overwritten."""


class UsageError(PipelineError, ValueError):
    """A command-line argument, parameter or setting is wrong; fix the command (exit 2)."""

    exit_code = EXIT_USAGE


class InvalidNameError(UsageError):
    """A release version, store location or bucket name given by a user is not acceptable (``cxr`` exits 2)."""


class StoreError(PipelineError):
    """The object store refused a request or lacks what it was asked for; the same request cannot succeed."""


class StoreAccessError(StoreError):
    """The store refused the keys: unknown access key, wrong secret, or no permission for the operation."""

    exit_code = EXIT_STORE


class StoreNotFoundError(StoreError):
    """The store's bucket (or an object a step needs) does not exist."""

    exit_code = EXIT_STORE


class StoreRequestError(StoreError):
    """The store refused a request for another reason (a 4xx answer other than access or not found)."""


class StoreUnavailableError(PipelineError):
    """The object store could not be reached or answered with a server error; a retry may help."""

    retryable = True


class LocalDiskError(PipelineError):
    """A write on this machine failed: no space left, read-only or over quota (``$TMPDIR`` or a local file)."""

    exit_code = EXIT_LOCAL_DISK


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


# the mapping the CLI and the DAG share


def exit_code(exc: BaseException) -> int | None:
    """The ``cxr`` exit code of an error a user can meet (the module's table); None for a bug.

    A kind answers with its ``exit_code``. Of the standard errors, only the operating system's speak of the user's
    own files: a disk that refused a write (exit 4), a local path missing or not theirs to use (exit 1), a folder
    that already holds something (``FileExistsError``: exit 2, ``cxr synth`` into a directory that is not empty).
    """
    if isinstance(exc, PipelineError):
        return int(exc.exit_code)
    if isinstance(exc, FileExistsError):
        return EXIT_USAGE
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return EXIT_LOCAL_DISK
    if isinstance(exc, OSError) and exc.filename is not None:
        return EXIT_FAILED
    return None


def is_retryable(exc: BaseException) -> bool:
    """Whether running the same step again can help: only a kind that says so (an unreachable store or source).

    Not for a bug (:func:`exit_code` None): the DAG re-raises those with their traceback and Airflow's own retries.
    """
    return isinstance(exc, PipelineError) and bool(exc.retryable)


# ingest


class SourceUnavailableError(StoreUnavailableError):
    """A source server could not be reached or kept failing; a retry later may help."""

    retryable = True


class UnreadableFileError(BadDataError, ValueError):
    """A metadata file is empty, binary or not UTF-8 text."""

    retryable = False


class FileTooLargeError(UnreadableFileError):
    """A metadata file is larger than its kind's limit (``pipeline.ingest.files.MAX_FILE_BYTES``); it was not read."""

    retryable = False


# curate


class UnknownHeaderError(BadDataError, ValueError):
    """The header of a metadata file matches no known variant; the message lists its columns and the variants."""

    retryable = False


class DefectiveFileError(UnreadableFileError):
    """More than half of an auxiliary file's rows are defective: the file is refused, not its rows quarantined."""

    retryable = False


class LayerSpecError(BadDataError, ValueError):
    """An annotation layer's JSON spec (``<file>.layer.json``) is unreadable or breaks the spec's rules; the message
    names the spec file, the key and what it must hold."""

    retryable = False


class SuiteError(PipelineError, ValueError):
    """An expectation suite JSON file (``expectations/`` or ``$CXR_EXPECTATIONS_DIR``) is invalid or GX did not
    load all of its expectations; fix the file the message names."""

    retryable = False


class BlockingValidationError(BadDataError):
    """A blocking expectation failed: the run stops before publishing; ``report`` carries the validation report."""

    retryable = False

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


# png


class ImageError(BadDataError, ValueError):
    """The bytes are not a sound PNG; the message says why."""


class UndecodableImageError(ImageError):
    """The PNG's structure is sound but its pixels cannot be decoded (quarantined, never published)."""


# publish


class ReleaseNotFoundError(PipelineError):
    """The version asked for is not a published release of the store (no manifest, or nothing published yet)."""

    retryable = False


class LatestPointerError(PipelineError):
    """``releases/latest.json`` names something that is not a release name; open a release by its version."""

    retryable = False


class LatestContentionError(PipelineError):
    """``latest.json`` kept changing under this run; the release is published, a rerun moves the pointer."""

    retryable = True


class VerifyError(PipelineError):
    """Bytes in the store differ from what was written or from what the manifest lists; nothing was published.

    A retry of the same task cannot help: the damaged units are converted again only when the run is rerun.
    """

    retryable = False


class AccountingError(PipelineError):
    """Inputs and outputs of a run do not add up; nothing was published."""

    retryable = False


# dev (local tooling: pipeline.dev; met by `cxr stack|demo|ui`, `make scheduler|celery` and the test-suite)


class StackError(PipelineError):
    """The local S3 stack could not be started, reached or stopped; the message says why and where its log is."""

    retryable = False


class ProcessGroupError(PipelineError):
    """A local process group (weed, an Airflow component) survived SIGKILL; the message names it and its PID."""

    retryable = False


class LocalAirflowError(PipelineError):
    """The local Airflow could not start: no free port pair, or a component exited (see its log in the home)."""

    retryable = False


class AirflowApiError(PipelineError):
    """The local Airflow REST API answered with an error status (kept in ``status``)."""

    retryable = False

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
