"""pipeline.dev.demo: what ``cxr demo`` and ``cxr ui`` tell the user, from a real mirror and a real store.

The whole road (mirror, stack, ``airflow dags test``) is ``make demo``; here are its parts a user reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev import demo
from pipeline.dev.airflow.settings import admin_password, airflow_env
from pipeline.dev.stack import StackInfo
from pipeline.store.storage import Store
from tests.integration.releases import make_source, publish


def test_the_mirror_is_written_once_then_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = demo._ensure_source(tmp_path, images=2)
    assert (source / "Data_Entry_2017.csv").is_file()
    assert f"writing a synthetic mirror of 2 images to {source}" in capsys.readouterr().out
    stamp = (source / "Data_Entry_2017.csv").stat().st_mtime_ns
    assert demo._ensure_source(tmp_path, images=2) == source
    assert f"reusing the synthetic mirror in {source}" in capsys.readouterr().out
    assert (source / "Data_Entry_2017.csv").stat().st_mtime_ns == stamp


def test_scheduled_runs_read_the_demos_mirror_else_cxr_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXR_SOURCE", "/data/nih")
    assert demo._demo_source(tmp_path) == "/data/nih"
    (tmp_path / "source" / "synthetic-240").mkdir(parents=True)
    assert demo._demo_source(tmp_path) == str((tmp_path / "source" / "synthetic-240").resolve())


def test_the_ui_banner_gives_the_login_and_the_api_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    airflow_env(tmp_path)  # makes the admin password
    demo._say_how_to_use(24400, tmp_path, celery=False)
    out = capsys.readouterr().out
    assert f"Airflow UI: http://127.0.0.1:24400  user admin, password {admin_password(tmp_path)}" in out
    assert "curl -s -X POST http://127.0.0.1:24400/auth/token" in out
    assert f"/api/v2/dags/{demo.DAG_ID}/dagRuns" in out
    assert "CeleryExecutor" not in out


@pytest.fixture
def demo_bucket(s3_client: Any) -> Iterator[str]:
    name = demo.DEMO_BUCKET.removeprefix("s3://")
    s3_client.create_bucket(Bucket=name)
    yield name
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3_client.delete_object(Bucket=name, Key=obj["Key"])
    s3_client.delete_bucket(Bucket=name)


@pytest.mark.integration
def test_the_report_names_the_release_and_its_counts(
    s3_stack: StackInfo, demo_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo._report(s3_stack, tmp_path)
    assert "no release found in the store" in capsys.readouterr().out
    summary = publish(Store(s3_stack.store_config(demo.DEMO_BUCKET)), make_source(tmp_path / "src"), "demo-1")
    demo._report(s3_stack, tmp_path)
    out = capsys.readouterr().out
    assert f"4/4 release {summary['version']} is at {demo.DEMO_BUCKET}/releases/{summary['version']}/" in out
    for split, count in summary["counts"].items():
        assert f"    {split:<5} {count:>6} images" in out
    assert f"cxr stack env --dir {tmp_path / 'stack'}" in out
