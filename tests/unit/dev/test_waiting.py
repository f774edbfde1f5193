"""pipeline.dev.waiting: polling until something is there, a timeout that says what was awaited."""

from __future__ import annotations

import time

import pytest

from pipeline.dev.waiting import wait_until


def test_returns_the_first_truthy_answer() -> None:
    answers = iter([None, {}, {"state": "success"}])
    assert wait_until(lambda: next(answers), 5, "a run", interval=0.01) == {"state": "success"}


def test_gives_up_after_the_timeout_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="gave up after 0 s waiting for DAG nih_cxr_release to be parsed"):
        wait_until(lambda: None, 0.2, "DAG nih_cxr_release to be parsed", interval=0.05)
    assert 0.2 <= time.monotonic() - started < 2


def test_an_error_of_the_probe_is_not_swallowed() -> None:
    def probe() -> None:
        raise RuntimeError("component exited")

    with pytest.raises(RuntimeError, match="component exited"):
        wait_until(probe, 5, "anything")
