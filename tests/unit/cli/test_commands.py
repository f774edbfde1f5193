"""The CLI's terminal progress line and its argument handling."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import progress
from pipeline.cli import commands as cli


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
        cli.main(["run", "--store", "s3://bkt"])
    assert exc.value.code == 2


def test_bad_release_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", "--source", "/nowhere", "--store", "s3://bkt", "--release", "../etc"])
    assert code == 2
    assert "release version '../etc' must match" in capsys.readouterr().err


CXR = str(Path(sys.executable).with_name("cxr"))
BAD_NAMES = [
    (["run", "--source", "/nowhere", "--store", "s3://bkt/p", "--release", "latest"], "'latest' is reserved"),
    (["run", "--source", "/nowhere", "--store", "s3://bkt/p", "--release", "v1\n"], "'v1\\n' must match"),
    (["run", "--source", "/nowhere", "--store", "s3://bkt/p", "--release", "x.json"], "'x.json' is reserved"),
    (["run", "--source", "/nowhere", "--store", "s3://bkt/p//q"], "empty segment"),
    (["run", "--source", "/nowhere", "--store", "s3://bkt/p/releases/v1"], "inside a store's layout"),
    (["run", "--source", "/nowhere", "--store", "s3://Bad_Bucket/p"], "not a valid S3 bucket name"),
    (["verify", "--store", "s3://bkt/p", "--release", "../v1"], "'../v1' must match"),
    (["verify", "--store", "s3://bkt/p/../q", "--release", "latest"], "a '..' segment"),
    (["releases", "show", "--store", "s3://bkt/p", "v1/../../x"], "must match"),
    (["releases", "diff", "--store", "s3://bkt/p", "latest", "../v1"], "'../v1' must match"),
]


@pytest.mark.parametrize(("args", "message"), BAD_NAMES, ids=[" ".join(a[:1] + a[-1:]) for a, _ in BAD_NAMES])
def test_bad_names_and_locations_exit_2_with_one_line(args: list[str], message: str) -> None:
    # No endpoint is reachable here: each is refused before the store is ever asked.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "CXR_STORE_RETRY_S": "0"}
    done = subprocess.run([CXR, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
