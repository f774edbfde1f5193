"""A reviewer's decision on a staged release: approved or rejected, by whom, when, why, and through what.

Decisions come from Airflow's human-in-the-loop task (:func:`from_hitl`), from the terminal of ``cxr run --review``
(:func:`from_answer`) or from ``cxr run --review --approve`` (:func:`approved_by_flag`). A review that timed out
is a rejection (:data:`TIMED_OUT`). Standard library only: the DAG file imports this module when it is parsed.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pipeline.errors import UsageError

APPROVE = "Approve"
REJECT = "Reject"
#: The options of the review task, in the order the Airflow page shows them.
OPTIONS = (APPROVE, REJECT)
#: What a review that nobody answered in time says (the task's default option is ``Reject``).
TIMED_OUT = "nobody answered before the review timed out"
#: The review task's form field for the reviewer's reason or comment.
REASON_PARAM = "reason"

#: How long the Airflow review task waits for an answer, in hours (read when the DAG file is parsed).
REVIEW_HOURS_ENV = "CXR_REVIEW_HOURS"
DEFAULT_REVIEW_HOURS = 24.0

Via = Literal["airflow", "terminal", "--approve"]


def review_timeout(environ: Mapping[str, str] = os.environ) -> dt.timedelta:
    """How long a review may wait: ``$CXR_REVIEW_HOURS`` (default 24; fractions allowed) hours.

    Raises:
        UsageError: the value is not a number of hours above 0.
    """
    text = environ.get(REVIEW_HOURS_ENV, "").strip()
    try:
        hours = float(text) if text else DEFAULT_REVIEW_HOURS
    except ValueError:
        hours = -1.0
    if not hours > 0 or hours == float("inf"):
        raise UsageError(
            f"{REVIEW_HOURS_ENV}={text!r} must be a number of hours above 0 (e.g. 24, or 0.5 for 30 minutes): fix it "
            "in the dag-processor's environment"
        )
    return dt.timedelta(hours=hours)


def duration_words(delta: dt.timedelta) -> str:
    """``24 hours``, ``90 minutes``, ``1 hour``."""
    minutes = round(delta.total_seconds() / 60)
    if minutes % 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} hour{'s' if minutes != 60 else ''}"


@dataclass(frozen=True)
class Decision:
    """One review's outcome; ``comment`` is the reason of a rejection (or an approver's note)."""

    approved: bool
    by: str | None
    at: str
    comment: str
    via: Via

    @property
    def decision(self) -> str:
        return "approved" if self.approved else "rejected"

    def to_dict(self) -> dict[str, Any]:
        """The record kept in the manifest's ``provenance.review`` and in ``raw/runs/<run>/review.json``."""
        return {"decision": self.decision, **{k: v for k, v in asdict(self).items() if k != "approved"}}

    def text(self) -> str:
        """``approved by alice at 2026-12-02T10:00:00Z via airflow: looks right``."""
        return review_text(self.to_dict())


def review_text(review: Mapping[str, Any]) -> str:
    """``approved by alice at 2026-12-02T10:00:00Z via airflow: looks right`` from a review record."""
    who = f" by {review['by']}" if review.get("by") else ""
    why = f": {review['comment']}" if review.get("comment") else ""
    return f"{review.get('decision', '?')}{who} at {review.get('at', '?')} via {review.get('via', '?')}{why}"


def now_text() -> str:
    """The current UTC time as the records write it (seconds, ``Z``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user_name(user: Any) -> str | None:
    """The name in what Airflow says responded (``{"id": ..., "name": ...}``, a string, or None)."""
    if isinstance(user, Mapping):
        return str(user.get("name") or user.get("id") or "") or None
    return str(user) if user else None


def _moment_text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value) if value else now_text()


def from_hitl(result: Mapping[str, Any]) -> Decision:
    """The decision in what the review task returned (``chosen_options``, ``params_input``, ``responded_by_user``,
    ``responded_at``). Anything but exactly ``Approve`` is a rejection; no responder means the review timed out."""
    chosen = list(result.get("chosen_options") or [])
    reason = str((result.get("params_input") or {}).get(REASON_PARAM) or "").strip()
    by = _user_name(result.get("responded_by_user"))
    approved = chosen == [APPROVE] and by is not None
    if by is None and not reason:
        reason = TIMED_OUT
    return Decision(approved, by, _moment_text(result.get("responded_at")), reason, "airflow")


def from_answer(answer: str, reason: str) -> Decision:
    """The decision typed at ``cxr run --review``'s prompt: ``y``/``yes`` approves, anything else rejects."""
    approved = answer.strip().lower() in ("y", "yes")
    return Decision(approved, _login(), now_text(), reason.strip(), "terminal")


def approved_by_flag() -> Decision:
    """``cxr run --review --approve``: approved by whoever ran the command (for scripts)."""
    return Decision(True, _login(), now_text(), "approved on the command line (--approve)", "--approve")


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (a container without /etc/passwd entry)
        return None
