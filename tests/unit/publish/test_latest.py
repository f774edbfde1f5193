"""The order ``latest`` follows (as-of day, then publication time, then name) and the name order of listings."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.publish.latest import LatestRank, latest_rank, version_date, version_key


def rank(version: str, published: str | None) -> LatestRank:
    return latest_rank(version, published)


def test_date_names_and_other_names_are_told_apart() -> None:
    assert version_date("2026.11.26") == dt.date(2026, 11, 26)
    assert version_date("2026.11.26.2") == dt.date(2026, 11, 26)
    for other in ("v1", "rc1", "2026.12.01-hotfix", "2026.13.45", "2026.11.26.2.1", "20261126"):
        assert version_date(other) is None, other


@pytest.mark.parametrize(
    ("newer", "older", "case"),
    [
        (("2026.11.27", "2026-11-27T03:00:00+00:00"), ("2026.11.26", "2026-11-26T03:00:00+00:00"), "nightly"),
        (("2026.11.26", "2026-11-27T03:00:00+00:00"), ("2026.11.20", "2026-11-28T03:00:00+00:00"), "backfill"),
        (("2026.11.26.2", "2026-11-26T09:00:00+00:00"), ("2026.11.26", "2026-11-26T03:00:00+00:00"), "same day"),
        (("v1", "2026-11-27T10:00:00+00:00"), ("2026.11.27", "2026-11-27T03:00:00+00:00"), "named after nightly"),
        (("2026.11.28", "2026-11-28T03:00:00+00:00"), ("v1", "2026-11-27T10:00:00+00:00"), "nightly after named"),
        (("2026.11.27", "2026-11-28T03:00:00+00:00"), ("v1", "2026-11-27T10:00:00+00:00"), "same-day nightly late"),
        (("rc2", "2026-11-27T10:00:01+00:00"), ("rc1", "2026-11-27T10:00:00+00:00"), "named after named"),
        (("2026.12.01-hotfix", "2026-12-02T08:00:00+00:00"), ("2026.12.01", "2026-12-01T03:00:00+00:00"), "hotfix"),
        (("v1", "2026-11-27T10:00:00+00:00"), ("2026.11.26", "2026-11-27T11:00:00+00:00"), "late backfill"),
    ],
)
def test_latest_order(newer: tuple[str, str], older: tuple[str, str], case: str) -> None:
    assert rank(*newer) > rank(*older), case


def test_a_backfill_never_ranks_above_a_named_release_of_a_later_day() -> None:
    named = rank("rc1", "2026-11-27T10:00:00+00:00")
    for day in range(1, 27):
        assert rank(f"2026.11.{day:02d}", "2026-11-30T00:00:00+00:00") < named


def test_times_compare_across_offsets_and_a_missing_time_ranks_first() -> None:
    assert rank("v2", "2026-11-27T12:00:00+02:00") < rank("v1", "2026-11-27T11:00:00+00:00")
    assert rank("v1", None) < rank("v0", "2026-01-01T00:00:00+00:00")


def test_name_order_puts_same_day_numbers_in_number_order_and_names_after_dates() -> None:
    names = ["v1", "2026.11.26.10", "2026.11.27", "2026.11.26", "2026.11.26.2", "rc1"]
    assert sorted(names, key=version_key) == ["2026.11.26", "2026.11.26.2", "2026.11.26.10", "2026.11.27", "rc1", "v1"]
