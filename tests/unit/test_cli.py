"""The CLI's terminal progress line and its argument handling."""

from __future__ import annotations

import io

import pytest

from pipeline import cli, progress


def test_progress_line_shows_bar_counts_and_rate() -> None:
    out = io.StringIO()
    draw = cli.TerminalProgress(out)
    draw(progress.ProgressEvent("convert train-000000", 25, 100, 412.5))
    draw(progress.ProgressEvent("convert train-000000", 100, 100, 400.0, finished=True))
    first, second = out.getvalue().split("\r")[1:]
    assert "[#######.......................] 25/100" in first
    assert "412.5/s" in first
    assert second.endswith("100/100   400.0/s\n")


def test_progress_without_total_shows_live_count() -> None:
    out = io.StringIO()
    cli.TerminalProgress(out)(progress.ProgressEvent("extract images_001.zip", 1234, None, 99.0))
    assert "1234" in out.getvalue()
    assert "99.0/s" in out.getvalue()


def test_listener_receives_events_from_library_progress() -> None:
    seen: list[progress.ProgressEvent] = []
    progress.set_listener(seen.append)
    try:
        counter = progress.Progress("stage", 3, __import__("logging").getLogger("t"))
        counter.advance(3)
        counter.finish()
    finally:
        progress.set_listener(None)
    assert seen[-1].finished
    assert seen[-1].done == 3


def test_run_requires_source_and_store() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--store", "s3://b"])
    assert exc.value.code == 2


def test_bad_release_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", "--source", "/nowhere", "--store", "s3://b", "--release", "../etc"])
    assert code == 2
    assert "release version '../etc' must match" in capsys.readouterr().err
