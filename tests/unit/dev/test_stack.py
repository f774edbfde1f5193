"""Tests for pipeline.dev.stack: a real SeaweedFS ``weed mini`` on loopback, no mocks of S3."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from botocore.exceptions import ClientError

from pipeline.dev.stack import (
    GRPC_OFFSET,
    SERVICES,
    LocalS3,
    StackError,
    StackInfo,
    is_port_free,
    pick_ports,
    stack_down,
    stack_status,
    stack_up,
)
from pipeline.store.client import make_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO_ROOT = Path(__file__).resolve().parents[3]


def _live_group_members(pgid: int) -> list[int]:
    """Processes in group ``pgid``, minus fully exited zombies (a zombie leader may have live threads)."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat_file.read_text().rsplit(")", 1)[1].split()[:3]
            threads = len(list((stat_file.parent / "task").iterdir()))
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and (state != "Z" or threads > 1):
            members.append(int(stat_file.parent.name))
    return members


def _listening_tcp(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP listener owned by ``pid``, from /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                addr, port = cols[1].split(":")
                ip = ".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)) if len(addr) == 8 else addr
                found.add((ip, int(port, 16)))
    return found


def _seaweed_sockets(ports: dict[str, int]) -> list[Path]:
    numbers = {p for port in ports.values() for p in (port, port + GRPC_OFFSET)}
    return [p for p in Path("/tmp").glob("seaweedfs-*.sock") if int(p.stem.rsplit("-", 1)[1]) in numbers]


def _error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response.get("Error", {}).get("Code"))


# --- the shared session stack ----------------------------------------------------------------------


def test_stack_listens_only_on_the_ports_it_chose(s3_stack: StackInfo) -> None:
    assert set(s3_stack.ports) == set(SERVICES)
    assert s3_stack.endpoint_url == f"http://127.0.0.1:{s3_stack.ports['s3']}"
    expected = {("127.0.0.1", p + off) for p in s3_stack.ports.values() for off in (0, GRPC_OFFSET)}
    deadline = time.monotonic() + 10  # the admin server comes up a moment after S3 answers
    while _listening_tcp(s3_stack.pid) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _listening_tcp(s3_stack.pid) == expected
    assert all(port != 8080 for _, port in expected)


def test_signed_put_get_round_trip(s3_client: S3Client, s3_bucket: str) -> None:
    payload = os.urandom(300_000) + b"\x00\xff end"
    s3_client.put_object(Bucket=s3_bucket, Key="dir/blob.bin", Body=payload)
    assert s3_client.get_object(Bucket=s3_bucket, Key="dir/blob.bin")["Body"].read() == payload


def test_unsigned_requests_are_refused(s3_stack: StackInfo, s3_client: S3Client, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="private.txt", Body=b"secret")
    base = s3_stack.endpoint_url
    assert requests.get(f"{base}/", timeout=5).status_code == 403
    assert requests.get(f"{base}/{s3_bucket}", timeout=5).status_code == 403
    response = requests.get(f"{base}/{s3_bucket}/private.txt", timeout=5)
    assert response.status_code == 403
    assert b"secret" not in response.content
    assert requests.put(f"{base}/{s3_bucket}/anon.txt", data=b"x", timeout=5).status_code == 403
    with pytest.raises(ClientError):
        s3_client.head_object(Bucket=s3_bucket, Key="anon.txt")


def test_consumer_can_get_and_list(s3_client: S3Client, s3_consumer_client: S3Client, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="release/a.txt", Body=b"data")
    assert s3_consumer_client.get_object(Bucket=s3_bucket, Key="release/a.txt")["Body"].read() == b"data"
    listing = s3_consumer_client.list_objects_v2(Bucket=s3_bucket, Prefix="release/")
    assert [obj["Key"] for obj in listing["Contents"]] == ["release/a.txt"]


def test_consumer_cannot_put_or_delete(
    s3_client: S3Client,
    s3_consumer_client: S3Client,
    s3_bucket: str,
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="keep.txt", Body=b"keep")
    with pytest.raises(ClientError) as put_error:
        s3_consumer_client.put_object(Bucket=s3_bucket, Key="new.txt", Body=b"x")
    assert _error_code(put_error) == "AccessDenied"
    with pytest.raises(ClientError) as delete_error:
        s3_consumer_client.delete_object(Bucket=s3_bucket, Key="keep.txt")
    assert _error_code(delete_error) == "AccessDenied"
    assert s3_client.get_object(Bucket=s3_bucket, Key="keep.txt")["Body"].read() == b"keep"


def test_non_empty_bucket_cannot_be_deleted(s3_client: S3Client, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="x", Body=b"x")
    with pytest.raises(ClientError) as error:
        s3_client.delete_bucket(Bucket=s3_bucket)
    assert _error_code(error) == "BucketNotEmpty"


# --- StackInfo and port picking (no server needed) ---------------------------------------------------


def _info(**changes: Any) -> StackInfo:
    base = StackInfo("http://127.0.0.1:12345", "AK", "S'K $x", "CAK", "CSK", 42, "/d", {"s3": 12345})
    return dataclasses.replace(base, **changes)


def test_env_export_and_json_round_trip() -> None:
    info = _info()
    assert info.env() == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:12345",
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "S'K $x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    assert info.consumer_env()["AWS_ACCESS_KEY_ID"] == "CAK"
    assert info.consumer_env()["AWS_SECRET_ACCESS_KEY"] == "CSK"
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in info.export_lines().splitlines())
    assert parsed == info.env()
    assert StackInfo.from_json(info.to_json()) == info
    with pytest.raises(ValueError, match="incomplete"):
        StackInfo.from_json(json.dumps({"endpoint_url": "x"}))


def test_pick_ports_avoids_8080_and_busy_grpc_ports() -> None:
    for _ in range(20):
        ports = pick_ports()
        numbers = [p + off for p in ports.values() for off in (0, GRPC_OFFSET)]
        assert len(set(numbers)) == len(numbers) == 2 * len(SERVICES)
        assert 8080 not in numbers
        assert all(is_port_free(p) for p in numbers)
    with pytest.raises(StackError):
        pick_ports(s3_port=8080)


def test_pick_ports_rejects_s3_port_whose_grpc_port_is_busy(s3_stack: StackInfo) -> None:
    busy_grpc = s3_stack.ports["filer"]  # filer's HTTP port is someone's "port + 10000"
    with pytest.raises(StackError, match="unusable"):
        pick_ports(s3_port=busy_grpc - GRPC_OFFSET)
    assert pick_ports(preferred={"s3": s3_stack.ports["s3"]})["s3"] != s3_stack.ports["s3"]


def test_startup_failure_reports_log_tail_and_cleans_up(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fake weed: boom' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXR_WEED_BIN", str(fake))
    local = LocalS3()
    with pytest.raises(StackError, match=r"(?s)code 3.*fake weed: boom"):
        local.start()
    assert local.info is None


def test_status_ignores_a_recorded_pid_that_is_not_weed(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(_info(pid=os.getpid(), data_dir=str(tmp_path / "data")).to_json())
    assert stack_status(tmp_path) is None
    assert stack_down(tmp_path) is False  # and, crucially, did not signal us
    assert stack_status(tmp_path / "missing") is None


# --- extra stacks ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_local_s3_stop_leaves_nothing_behind() -> None:
    local = LocalS3()
    info = local.start()
    root = Path(info.data_dir).parent
    identities = root / "s3-identities.json"
    assert stat.S_IMODE(identities.stat().st_mode) == 0o600
    assert {i["name"] for i in json.loads(identities.read_text())["identities"]} == {"pipeline", "consumer"}
    assert _live_group_members(info.pid) == [info.pid]
    assert _seaweed_sockets(info.ports), "expected weed's gRPC sockets in /tmp while running"
    make_client(info.store_config()).list_buckets()

    local.stop()

    assert _live_group_members(info.pid) == []
    assert all(is_port_free(p + off) for p in info.ports.values() for off in (0, GRPC_OFFSET))
    assert not root.exists()
    assert _seaweed_sockets(info.ports) == []


@pytest.mark.integration
def test_restart_with_new_keys_revokes_old_ones(tmp_path: Path) -> None:
    with LocalS3(data_dir=tmp_path / "s3") as first:
        make_client(first.store_config()).create_bucket(Bucket="kept")
    with LocalS3(data_dir=tmp_path / "s3") as second:
        assert second.access_key_id != first.access_key_id
        assert [b["Name"] for b in make_client(second.store_config()).list_buckets()["Buckets"]] == ["kept"]
        stale = dataclasses.replace(first, endpoint_url=second.endpoint_url)
        with pytest.raises(ClientError) as error:
            make_client(stale.store_config(), attempts=1).list_buckets()
        assert _error_code(error) == "InvalidAccessKeyId"
    assert not list(tmp_path.rglob("*.sock"))


def _stack_up_in_subprocess(state_dir: Path) -> int:
    code = "import sys, pathlib, pipeline.dev.stack as s; print(s.stack_up(pathlib.Path(sys.argv[1])).pid)"
    done = subprocess.run(
        [sys.executable, "-c", code, str(state_dir)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.integration
def test_background_stack_survives_caller_and_keeps_data(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    try:
        pid = _stack_up_in_subprocess(state)  # the caller exits; weed must live on
        info = stack_status(state)
        assert info is not None
        assert info.pid == pid
        assert stack_up(state) == info  # a second `up` returns the running stack
        for name in ("stack.json", "identities.json"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
        assert Path(info.data_dir) == (state / "data").resolve()
        client = make_client(info.store_config())
        client.create_bucket(Bucket="survivor")
        client.put_object(Bucket="survivor", Key="k", Body=b"still here")

        assert stack_down(state) is True
        assert _live_group_members(pid) == []
        assert is_port_free(info.ports["s3"])
        assert stack_status(state) is None
        assert stack_down(state) is False
        recorded = StackInfo.from_json((state / "stack.json").read_text())
        assert recorded.pid == 0
        assert recorded.access_key_id == info.access_key_id

        again = stack_up(state)
        assert again.pid != pid
        assert (again.endpoint_url, again.secret_access_key) == (info.endpoint_url, info.secret_access_key)
        assert make_client(again.store_config()).get_object(Bucket="survivor", Key="k")["Body"].read() == b"still here"
    finally:
        last = stack_status(state)
        stack_down(state)
    if last is not None:
        assert _live_group_members(last.pid) == []
    assert list(state.rglob("*.sock")) == []
