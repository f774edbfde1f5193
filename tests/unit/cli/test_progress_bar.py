"""The live progress line ``cxr`` draws on a terminal."""

from __future__ import annotations

import io

from pipeline import progress
from pipeline.cli.progress_bar import TerminalProgress


def test_progress_line_shows_bar_counts_and_rate() -> None:
    out = io.StringIO()
    draw = TerminalProgress(out)
    draw(progress.ProgressEvent("convert train-000000", 25, 100, 412.5))
    draw(progress.ProgressEvent("convert train-000000", 100, 100, 400.0, finished=True))
    first, second = out.getvalue().split("\r")[1:]
    assert "[#######.......................] 25/100" in first
    assert "412.5/s" in first
    assert second.endswith("100/100   400.0/s\n")


def test_progress_without_total_shows_live_count() -> None:
    out = io.StringIO()
    TerminalProgress(out)(progress.ProgressEvent("extract images_001.zip", 1234, None, 99.0))
    assert "1234" in out.getvalue()
    assert "99.0/s" in out.getvalue()


def test_a_count_past_the_total_draws_a_full_bar_not_a_longer_one() -> None:
    out = io.StringIO()
    TerminalProgress(out)(progress.ProgressEvent("extract", 120, 100, 1.0))
    assert "[" + "#" * 30 + "] 120/100" in out.getvalue()
