"""``cxr runs list|clean`` as a user types them, against the real local S3 endpoint."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from pipeline.cli.commands import main
from pipeline.cli.runs import parse_duration
from pipeline.config import StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import UsageError
from pipeline.store import layout
from pipeline.store.storage import Store

RUN = "manual__2026-12-02T10:00:00+00:00"


@pytest.fixture
def store_uri(s3_stack: StackInfo, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<bucket>/p`` with this run's workspace (rejected in review, its release claimed) and a fresh one."""
    for name, value in s3_stack.env().items():
        monkeypatch.setenv(name, value)
    uri = f"s3://{s3_bucket}/p"
    store = Store(StoreConfig.from_env(uri))
    for run_id, version in ((RUN, "v1"), ("fresh", "v2")):
        store.put_bytes(layout.plan_key(run_id), json.dumps({"run_id": run_id, "version": version}).encode())
        store.put_bytes(layout.unit_key(run_id, "u0"), b"{}")
    store.put_bytes(layout.claim_key("v1"), json.dumps({"fingerprint": "f", "run_id": RUN}).encode())
    store.put_bytes(layout.release_key("v1", "metadata.parquet"), b"partial")
    store.put_bytes(layout.review_key(RUN), json.dumps({"decision": "rejected", "by": "alice"}).encode())
    return uri


def cxr(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.integration
def test_list_shows_every_workspace_and_which_is_stale(store_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cxr(["runs", "list", "--store", store_uri], capsys)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert set(rows) == {RUN, "fresh"}
    assert rows[RUN].endswith("yes: rejected in review")
    assert rows["fresh"].endswith("no")
    assert out.splitlines()[-1] == "2 workspace(s), 1 stale (idle 48h or rejected in review)"


@pytest.mark.integration
def test_a_dry_run_names_what_would_go_and_removes_nothing(store_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cxr(["runs", "clean", "--store", store_uri, "--dry-run"], capsys)
    assert code == 0
    assert f"would remove {store_uri}/runs/{layout.run_segment(RUN)}/ (run {RUN}, 2 objects" in out
    assert "rejected in review; with unpublished release folder releases/v1/ (2 objects" in out
    assert out.splitlines()[-1].endswith("nothing removed")
    assert len(list(Store(StoreConfig.from_env(store_uri)).list(""))) == 7


@pytest.mark.integration
def test_clean_names_what_it_removed_and_a_rerun_removes_nothing(
    store_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cxr(["runs", "clean", "--store", store_uri], capsys)
    assert code == 0
    assert f"removed {store_uri}/runs/{layout.run_segment(RUN)}/ (run {RUN}, 2 objects" in out
    assert out.splitlines()[-1].startswith("total: removed 1 workspace(s) and 1 release folder(s), 4 objects")
    left = {info.key for info in Store(StoreConfig.from_env(store_uri)).list("")}
    assert left == {layout.plan_key("fresh"), layout.unit_key("fresh", "u0"), layout.review_key(RUN)}
    code, out, _ = cxr(["runs", "clean", "--store", store_uri, "--json"], capsys)
    assert (code, json.loads(out)["workspaces"], json.loads(out)["objects"]) == (0, 0, 0)


@pytest.mark.integration
def test_keep_protects_a_run_named_on_the_command_line(store_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cxr(["runs", "clean", "--store", store_uri, "--keep", RUN], capsys)
    assert code == 0
    assert out.strip() == "total: removed 0 workspace(s) and 0 release folder(s), 0 objects (0 B)"


DURATIONS = [
    ("48h", dt.timedelta(hours=48)),
    ("7d", dt.timedelta(days=7)),
    ("90m", dt.timedelta(minutes=90)),
    ("1.5h", dt.timedelta(minutes=90)),
]


@pytest.mark.parametrize(("text", "span"), DURATIONS)
def test_durations_take_minutes_hours_and_days(text: str, span: dt.timedelta) -> None:
    assert parse_duration(text) == span


@pytest.mark.parametrize("text", ["48", "0h", "3w", "-2d", "", "h"])
def test_a_bad_duration_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(UsageError, match=re.escape("e.g. --older-than 48h, 7d or 90m")):
        parse_duration(text)


def test_a_bad_duration_exits_2_before_the_store_is_asked(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cxr(["runs", "clean", "--store", "s3://nowhere/p", "--older-than", "two days"], capsys)
    assert code == 2
    assert err.startswith("error: --older-than 'two days' is not a duration")
