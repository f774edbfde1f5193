"""A reviewer's decision, from what Airflow's review task returns and from the terminal."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.errors import UsageError
from pipeline.review import decision


def test_approve_from_a_named_reviewer_approves_with_their_note() -> None:
    got = decision.from_hitl(
        {
            "chosen_options": ["Approve"],
            "params_input": {"reason": " checked the card "},
            "responded_by_user": {"id": "7", "name": "alice"},
            "responded_at": dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC),
        }
    )
    assert got.approved
    assert got.to_dict() == {
        "decision": "approved", "by": "alice", "at": "2026-12-02T10:00:00Z", "comment": "checked the card",
        "via": "airflow",
    }  # fmt: skip
    assert got.text() == "approved by alice at 2026-12-02T10:00:00Z via airflow: checked the card"


def test_reject_keeps_the_reason() -> None:
    got = decision.from_hitl(
        {"chosen_options": ["Reject"], "params_input": {"reason": "labels shifted"}, "responded_by_user": "bob"}
    )
    assert not got.approved
    assert (got.decision, got.by, got.comment) == ("rejected", "bob", "labels shifted")


@pytest.mark.parametrize("chosen", [["Reject"], ["Approve"]])
def test_no_responder_is_a_timeout_and_a_rejection(chosen: list[str]) -> None:
    got = decision.from_hitl({"chosen_options": chosen, "params_input": {}, "responded_by_user": None})
    assert not got.approved, "only a person can approve"
    assert got.comment == decision.TIMED_OUT


def test_an_empty_answer_is_a_rejection() -> None:
    assert not decision.from_hitl({}).approved


@pytest.mark.parametrize(
    ("answer", "approved"), [("y", True), ("YES ", True), ("n", False), ("", False), ("ok", False)]
)
def test_only_yes_at_the_terminal_approves(answer: str, approved: bool) -> None:
    got = decision.from_answer(answer, "why")
    assert got.approved is approved
    assert got.via == "terminal"


def test_approve_flag_says_so() -> None:
    got = decision.approved_by_flag()
    assert got.approved
    assert got.via == "--approve"


def test_review_timeout_defaults_to_a_day_and_takes_fractions() -> None:
    assert decision.review_timeout({}) == dt.timedelta(hours=24)
    assert decision.review_timeout({"CXR_REVIEW_HOURS": "0.5"}) == dt.timedelta(minutes=30)
    assert decision.duration_words(dt.timedelta(hours=24)) == "24 hours"
    assert decision.duration_words(dt.timedelta(minutes=30)) == "30 minutes"


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_review_timeout_is_refused_with_what_to_write(value: str) -> None:
    with pytest.raises(UsageError, match=r"CXR_REVIEW_HOURS=.* must be a number of hours above 0"):
        decision.review_timeout({"CXR_REVIEW_HOURS": value})
