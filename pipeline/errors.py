"""Exceptions that say what went wrong, where, and whether a retry can help.

The DAG maps ``retryable`` onto Airflow's behaviour: bad data fails the task at once
(``AirflowFailException``), a flaky endpoint is retried with back-off.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    retryable = False


class BadDataError(PipelineError):
    """The input is wrong (missing file, unreadable archive, failed validation); retrying cannot help."""


class SourceNotFoundError(BadDataError):
    """A required source file is missing."""


class ReleaseConflictError(PipelineError):
    """A release version is taken by different content; it is never overwritten."""


class StoreUnavailableError(PipelineError):
    """The object store could not be reached or answered with a server error; a retry may help."""

    retryable = True
