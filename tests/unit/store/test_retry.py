"""Retry with back-off: the delay schedule, the two budgets, jitter, and that only transient errors are retried."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from pipeline.config import StoreConfig
from pipeline.errors import StoreAccessError, StoreUnavailableError
from pipeline.store import retry
from pipeline.store.storage import RETRY_BUDGET_ENV, Store


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Flaky(Exception):
    """Stands for a connection error."""


def _flaky(failures: int, result: str = "ok") -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise Flaky(f"failure {len(calls)}")
        return result

    return calls, fn


def _give_up(exc: Exception, attempts: retry.Attempts) -> Exception:
    return StoreUnavailableError(f"gave up after {attempts.total} attempts: {exc}")


def test_delays_double_from_the_first_up_to_the_cap() -> None:
    backoff = retry.Backoff(0.5, 8.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_only_shortens_a_delay_and_by_at_most_its_share() -> None:
    backoff = retry.Backoff(1.0, 10.0, jitter=0.25)
    assert backoff.delay(3, rand=lambda: 0.0) == 4.0
    assert backoff.delay(3, rand=lambda: 1.0) == 3.0
    assert all(3.0 <= backoff.delay(3) <= 4.0 for _ in range(200))


def test_an_attempt_budget_gives_up_at_that_many_failures_in_a_row() -> None:
    clock = Clock()
    calls, fn = _flaky(failures=10)
    with pytest.raises(StoreUnavailableError, match="after 4 attempts: failure 4") as caught:
        retry.call(
            fn, retry.Backoff(0.2, 10.0, attempts=4), lambda e: isinstance(e, Flaky), _give_up, sleep=clock.sleep
        )
    assert len(calls) == 4
    assert clock.slept == [0.2, 0.4, 0.8]
    assert isinstance(caught.value.__cause__, Flaky), "the last error stays attached for the log"


def test_a_time_budget_gives_up_before_a_wait_that_would_end_after_it() -> None:
    clock = Clock()
    attempts = retry.Attempts(retry.Backoff(0.5, 8.0, budget_s=5.0), clock=clock)
    waits = []
    while (wait := attempts.failed()) is not None:
        waits.append(wait)
        clock.sleep(wait)
    assert waits == [0.5, 1.0, 2.0]  # 3.5 s waited; the next wait (4 s) would end at 7.5 s > 5 s
    assert attempts.total == 4


def test_progress_restarts_the_count_of_failures_in_a_row() -> None:
    attempts = retry.Attempts(retry.Backoff(0.2, 10.0, attempts=3))
    assert attempts.failed() == 0.2
    assert attempts.failed() == 0.4
    attempts.progressed()
    assert attempts.failed() == 0.2, "a read that got further starts its back-off again"
    assert attempts.failed() == 0.4
    assert attempts.failed() is None
    assert attempts.total == 5


def test_a_transient_error_is_retried_until_it_passes() -> None:
    clock = Clock()
    calls, fn = _flaky(failures=2, result="landed")
    told: list[float] = []
    result = retry.call(
        fn,
        retry.Backoff(0.5, 8.0, budget_s=60.0),
        lambda e: isinstance(e, Flaky),
        _give_up,
        on_retry=lambda _exc, wait: told.append(wait),
        sleep=clock.sleep,
    )
    assert (result, len(calls), told) == ("landed", 3, [0.5, 1.0])


def test_a_terminal_error_is_raised_at_once_without_waiting() -> None:
    clock = Clock()

    def fn() -> str:
        raise KeyError("bad request")

    with pytest.raises(KeyError):
        retry.call(fn, retry.Backoff(0.5, 8.0), lambda e: isinstance(e, Flaky), _give_up, sleep=clock.sleep)
    assert clock.slept == []


def test_an_impossible_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        retry.Backoff(0.5, 8.0, jitter=1.5)
    with pytest.raises(ValueError, match="attempts"):
        retry.Backoff(0.5, 8.0, attempts=0)


# --- the store's retries use it ----------------------------------------------------------------------------


def _store() -> Store:
    return Store(StoreConfig("s3://bucket/p", "http://127.0.0.1:9"), client=object())  # type: ignore[arg-type]


def test_the_store_gives_up_on_an_unreachable_endpoint_after_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_BUDGET_ENV, "0")
    calls = []

    def down() -> None:
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    with pytest.raises(
        StoreUnavailableError, match=r"127\.0\.0\.1:9 unavailable while listing x: still failing after 1"
    ):
        _store().retrying("listing x", down)
    assert len(calls) == 1


def test_the_store_does_not_retry_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_BUDGET_ENV, "60")
    calls = []
    refused = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")

    def deny() -> None:
        calls.append(1)
        raise refused

    with pytest.raises(StoreAccessError, match="refused writing k"):
        _store().retrying("writing k", deny)
    assert len(calls) == 1, "the same request would be refused again: no retry, no wait"
