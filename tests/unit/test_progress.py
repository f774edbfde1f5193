"""pipeline.progress: throttled log lines in the library, events for the CLI's listener."""

from __future__ import annotations

import logging

import pytest

from pipeline import progress


@pytest.fixture
def events() -> list[progress.ProgressEvent]:
    seen: list[progress.ProgressEvent] = []
    progress.set_listener(seen.append)
    yield seen
    progress.set_listener(None)


def test_listener_receives_events_from_library_progress(events: list[progress.ProgressEvent]) -> None:
    counter = progress.Progress("stage", 3, logging.getLogger("t"))
    counter.advance(3)
    counter.finish()
    assert events[-1].finished
    assert events[-1].done == 3
    assert events[-1].total == 3


def test_the_log_gets_a_line_every_few_seconds_and_a_final_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="t.progress")
    counter = progress.Progress("extract images_001.zip", 10, logging.getLogger("t.progress"), every=0.0)
    counter.advance(4)
    counter.finish()
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("extract images_001.zip: 4/10 done, ")
    assert messages[-1].startswith("extract images_001.zip: 4 done in ")


def test_a_slow_log_interval_keeps_the_log_quiet_until_the_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="t.quiet")
    counter = progress.Progress("convert", None, logging.getLogger("t.quiet"), every=3600)
    for _ in range(100):
        counter.advance()
    counter.finish()
    assert len(caplog.records) == 1, "only the final count"
    assert "convert: 100 done in" in caplog.records[0].getMessage()
