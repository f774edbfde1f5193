"""No traceback reaches a user: every failure a user can cause ends in one ``error:`` line that names the thing and
says what to do, with its documented exit code (README, "Exit codes"); in Airflow the failed task's log starts with
that line. Each case is built here, on the fly, and run through the real ``cxr`` console script against the
session's SeaweedFS (or, for the Airflow case, the real DAG with ``dag.test()``).
"""

from __future__ import annotations

import functools
import http.server
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import commands as cli
from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from tests.integration.releases import CXR, cxr, make_source

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[2] / "dags"
# The documented exit codes, spelled out: a change to them is a change users notice.
FAILED, USAGE, STORE, LOCAL_DISK = 1, 2, 3, 4


def one_error(done: subprocess.CompletedProcess[str], code: int, *names: str) -> str:
    """Assert ``done`` exited with ``code``, printed no traceback, and exactly one ``error:`` line naming ``names``."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-4000:]
    assert done.returncode == code, output[-4000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith(("error: ", "cxr validate: error: "))]
    assert len(lines) == 1, done.stderr[-4000:]
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("no-traceback") / "mirror", images=24)


@pytest.fixture
def env(s3_stack: StackInfo, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The pipeline's keys, a short retry budget, and a log folder that must stay empty (no internal error)."""
    logs = tmp_path / "cxr-logs"
    logs.mkdir()
    yield {**s3_stack.env(), "CXR_STORE_RETRY_S": "2", cli.LOG_DIR_ENV: str(logs)}
    assert list(logs.iterdir()) == [], "an internal error wrote a traceback"


def _drop_bucket(s3_client: Any, bucket: str) -> None:
    """Empty and delete a bucket (no error when it is gone already)."""
    try:
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3_client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        s3_client.delete_bucket(Bucket=bucket)
    except s3_client.exceptions.NoSuchBucket:
        return


def test_invalid_bucket_name_is_a_usage_error(source: Path, env: dict[str, str]) -> None:
    done = cxr(["run", "--source", str(source), "--store", "s3://Not_A_Bucket/cxr"], env)
    one_error(done, USAGE, "'Not_A_Bucket'", "bucket name", "lowercase")


@pytest.mark.parametrize(
    "command",
    [
        ["releases", "list"],
        ["releases", "show", "latest"],
        ["releases", "diff", "v1", "v2"],
        ["verify", "--release", "v1"],
    ],
)
def test_missing_bucket_is_named_by_every_reading_command(command: list[str], env: dict[str, str]) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    done = cxr([*command, "--store", f"s3://{bucket}/cxr"], env)
    one_error(done, STORE, f"bucket '{bucket}' does not exist", env["AWS_ENDPOINT_URL"], "--store")


def _wait_until_stopped(run: subprocess.Popen[str], timeout: float) -> None:
    """Wait until ``run`` froze itself (state ``T``), failing with its output if it ended or never froze."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        if Path(f"/proc/{run.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.02)
    _, stderr = run.communicate(timeout=60) if run.poll() is not None else ("", "")
    raise AssertionError(f"the run never froze after landing a shard (exit {run.returncode}): {stderr[-3000:]}")


def test_bucket_deleted_mid_run_fails_naming_it(source: Path, env: dict[str, str], s3_client: Any) -> None:
    bucket = f"deleted-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    args = ["run", "--source", str(source), "--store", f"s3://{bucket}/cxr", "--release", "v1"]
    # The run freezes itself once its first shard has landed, with none of its requests in flight: a request held
    # open across the deletion would recreate the bucket on SeaweedFS when it completes (seen), not on AWS.
    run = subprocess.Popen(
        [CXR, *args],
        env={**os.environ, **env, "CXR_FAULT": "extract.shard:1:stop"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_until_stopped(run, timeout=120)
        _drop_bucket(s3_client, bucket)
        os.killpg(run.pid, signal.SIGCONT)
        stdout, stderr = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        _drop_bucket(s3_client, bucket)
    done = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    one_error(done, STORE, f"bucket '{bucket}' does not exist", "deleted", "rerun")
    assert re.search(r"images_001\.zip: \d+ images landed", stderr), "the bucket went away after the first shard"


def test_read_only_keys_cannot_run_and_are_told_why(
    source: Path, env: dict[str, str], s3_stack: StackInfo, s3_bucket: str
) -> None:
    consumer = {**env, **s3_stack.consumer_env()}
    done = cxr(["run", "--source", str(source), "--store", f"s3://{s3_bucket}/cxr"], consumer)
    one_error(done, STORE, "AccessDenied", f"s3://{s3_bucket}/cxr/", "read-only", "AWS_ACCESS_KEY_ID")
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    done = cxr(["run", "--source", str(source), "--store", f"s3://{missing}/cxr"], consumer)
    one_error(done, STORE, "AccessDenied", f"creating bucket {missing}")
    listed = cxr(["releases", "list", "--store", f"s3://{s3_bucket}/cxr"], consumer)  # reading is what they may do
    assert listed.returncode == 0, listed.stderr
    assert "no release published" in listed.stdout


@pytest.mark.parametrize(
    ("variable", "code", "advice"),
    [
        ("AWS_SECRET_ACCESS_KEY", "SignatureDoesNotMatch", "check AWS_SECRET_ACCESS_KEY"),
        ("AWS_ACCESS_KEY_ID", "InvalidAccessKeyId", "check AWS_ACCESS_KEY_ID"),
    ],
)
def test_wrong_keys_are_named(
    variable: str, code: str, advice: str, source: Path, env: dict[str, str], s3_bucket: str
) -> None:
    wrong = {**env, variable: "WRONG" + uuid.uuid4().hex.upper()}
    for command in (["run", "--source", str(source)], ["releases", "list"], ["verify", "--release", "v1"]):
        done = cxr([*command, "--store", f"s3://{s3_bucket}/cxr"], wrong)
        line = one_error(done, STORE, code, advice, s3_bucket, env["AWS_ENDPOINT_URL"])
        assert wrong[variable] not in done.stdout + done.stderr, line  # no key is ever printed


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_endpoint_fails_after_the_retry_budget(source: Path, env: dict[str, str]) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    down = {**env, "AWS_ENDPOINT_URL": endpoint, "CXR_STORE_RETRY_S": "1"}
    for command in (["run", "--source", str(source)], ["releases", "list"]):
        done = cxr([*command, "--store", "s3://anywhere/cxr"], down)
        one_error(done, FAILED, endpoint, "unavailable", "check that the endpoint is up", "CXR_STORE_RETRY_S")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Python's file server: it ignores ``Range``, so ``cxr`` spools every file to ``$TMPDIR``."""

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def full_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs with two pages left: room for Python's probe of the folder, not for an archive."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.fail("no mount command: a full temporary directory cannot be built (install util-linux)")
    command = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]
    made = subprocess.run(command, capture_output=True, check=False)
    if made.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-TMPDIR case ({made.stderr.decode().strip()}): run as root")
    try:
        (mount / "filler").write_bytes(b"\0" * (248 << 10))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_tmpdir_is_named_with_what_to_do(full_tmpdir: Path, tmp_path: Path, env: dict[str, str]) -> None:
    served = tmp_path / "served"
    synthesize(SynthConfig(dest=served, images=24, image_size=256, seed=3))  # archives of 40 KB and more
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=served))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        done = cxr(["run", "--source", url, "--store", "s3://full-tmpdir/cxr"], {**env, "TMPDIR": str(full_tmpdir)})
    finally:
        server.shutdown()
        server.server_close()
    one_error(done, LOCAL_DISK, "No space left on device", str(full_tmpdir), "TMPDIR", url)


def test_symlink_loop_as_source_is_refused_by_name(tmp_path: Path, env: dict[str, str], s3_bucket: str) -> None:
    first, second = tmp_path / "mirror", tmp_path / "other"
    first.symlink_to(second)
    second.symlink_to(first)
    done = cxr(["run", "--source", str(first), "--store", f"s3://{s3_bucket}/cxr"], env)
    one_error(done, FAILED, str(first), "loop of symbolic links", "--source")


def test_dotdot_in_the_store_path_is_a_usage_error(source: Path, env: dict[str, str], s3_bucket: str) -> None:
    store = f"s3://{s3_bucket}/cxr/../elsewhere"
    for command in (["run", "--source", str(source)], ["releases", "list"]):
        one_error(cxr([*command, "--store", store], env), USAGE, store, "'..'")


def test_dotdot_as_release_of_verify_is_a_usage_error(env: dict[str, str], s3_bucket: str) -> None:
    done = cxr(["verify", "--store", f"s3://{s3_bucket}/cxr", "--release", "../x"], env)
    one_error(done, USAGE, "'../x'")


def test_show_of_a_missing_version_says_where_to_look(env: dict[str, str], s3_bucket: str) -> None:
    done = cxr(["releases", "show", "v9", "--store", f"s3://{s3_bucket}/cxr"], env)
    one_error(done, FAILED, "release v9 is not published", f"s3://{s3_bucket}/cxr/releases/", "cxr releases list")
    assert done.stdout == ""


def test_validate_of_a_missing_file_names_it(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "Data_Entry_2017.csv"
    one_error(cxr(["validate", str(missing)], env), USAGE, str(missing), "No such file")


def test_a_bug_is_one_line_with_the_file_holding_its_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.LOG_DIR_ENV, str(tmp_path))
    try:
        {}["plan"]  # a real KeyError, with a real traceback
    except KeyError as exc:
        code = cli.report_error(exc)
    err = capsys.readouterr().err
    assert code == 70
    assert "Traceback" not in err
    assert err.startswith("error: internal error (a bug in cxr")
    assert err.count("\n") == 1
    (written,) = tmp_path.glob("cxr-traceback-*.log")
    assert str(written) in err
    assert "Traceback" in written.read_text()
    assert "KeyError: 'plan'" in written.read_text()


def _task_log(caplog: pytest.LogCaptureFixture, printed: str, task_id: str) -> list[tuple[bool, str]]:
    """(is an error, line) of one task's log under ``dag.test()``, from "starting" to "end task".

    Airflow's structlog either prints its lines (on a fresh process) or hands them to the standard logging
    module (once something else in the process has set logging up): read whichever holds the task.
    """
    start, end = f"[DAG TEST] starting task_id={task_id}", f"[DAG TEST] end task task_id={task_id}"
    lines = [(r.levelno >= logging.ERROR, r.getMessage()) for r in caplog.records]
    if not any(start in m for _, m in lines):
        lines = [("[error" in line, line) for line in printed.splitlines()]
    first = next(i for i, (_, m) in enumerate(lines) if start in m)
    last = next(i for i, (_, m) in enumerate(lines) if end in m)
    return lines[first:last]


def test_a_pipeline_error_is_the_first_error_line_of_the_airflow_task_log(
    airflow_db: Path,
    s3_stack: StackInfo,
    s3_bucket: str,
    source: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).dags["nih_cxr_release"]
    caplog.set_level(logging.INFO)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_stack.consumer_env().items():  # read-only keys: discover may not record the sources
            mp.setenv(key, value)
        run = dag.test(run_conf={"source": str(source), "store": f"s3://{s3_bucket}/cxr", "release": "v1"})
    assert str(run.state).endswith("failed")
    printed = capfd.readouterr()
    task = _task_log(caplog, printed.out + printed.err, "discover")
    errors = [m for is_error, m in task if is_error]
    assert errors, "the failed task logged no error line"
    first = errors[0]
    assert "StoreAccessError: object store at" in first
    assert "AccessDenied" in first
    assert f"s3://{s3_bucket}/cxr/" in first
    assert not any("botocore" in m for _, m in task)  # the store's internals stay out of a log about the user's keys
