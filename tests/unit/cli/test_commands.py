"""The ``cxr`` command line: its argument handling, and one ``error:`` line with the shared exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import errors
from pipeline.cli import commands as cli
from pipeline.errors import StoreAccessError, StoreUnavailableError, UsageError


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


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("--seed -1 must lie in 0 or more"), 2),
        (StoreAccessError("object store refused the keys (InvalidAccessKeyId): check AWS_ACCESS_KEY_ID"), 3),
        (StoreUnavailableError("object store at http://127.0.0.1:9 unavailable; check the endpoint, then rerun"), 1),
        (FileExistsError(17, "File exists", "/data/mirror"), 2),
    ],
)
def test_an_error_a_user_can_meet_is_one_line_with_the_shared_exit_code(
    exc: BaseException, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.report_error(exc) == code == errors.exit_code(exc)
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_a_bare_value_error_is_a_bug_not_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.LOG_DIR_ENV, str(tmp_path))
    assert cli.report_error(ValueError("a bug's message")) == 70
    assert "internal error (a bug in cxr" in capsys.readouterr().err


def test_run_flags_come_from_the_options_table(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("--dry-run", "--val-fraction", "--shard-size-mb", "--variant-size", "--data-entry", "--checksums"):
        assert flag in out
    assert "--store-conn-id" not in out  # an Airflow connection: the DAG's form only
    assert "16..1024 px, or 0 for none; default 256" in " ".join(out.split())


def test_an_out_of_range_flag_exits_2_before_anything_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", "--source", "/nowhere", "--store", "s3://bkt", "--variant-size", "8"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Variant size (--variant-size, param 'variant_size') 8 must lie in 16..1024 px")
