"""`cxr synth` + `cxr run` as a user drives them, against the real local S3 endpoint."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from pipeline.dev.stack import StackInfo

pytestmark = pytest.mark.integration
CXR = str(Path(sys.executable).with_name("cxr"))


def cxr(args: list[str], stack: StackInfo) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env()}
    return subprocess.run([CXR, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo) -> Path:
    dest = tmp_path_factory.mktemp("cli") / "mirror"
    done = cxr(["synth", str(dest), "--images", "48", "--image-size", "64", "--seed", "3"], s3_stack)
    assert done.returncode == 0, done.stderr
    return dest


@pytest.fixture(scope="module")
def first_run(source: Path, s3_stack: StackInfo) -> subprocess.CompletedProcess[str]:
    return cxr(["run", "--source", str(source), "--store", "s3://cli-run/x", "--release", "v1"], s3_stack)


def _source_images(source: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for archive in sorted(source.glob("images_*.zip")):
        with zipfile.ZipFile(archive) as zf:
            found.update({Path(n).name: zf.read(n) for n in zf.namelist() if n.endswith(".png")})
    return found


def test_run_prints_version_and_counts(first_run: subprocess.CompletedProcess[str]) -> None:
    assert first_run.returncode == 0, first_run.stderr
    assert "release v1: published" in first_run.stdout
    counts = {line.split()[0]: int(line.split()[1]) for line in first_run.stdout.splitlines()[1:4]}
    assert set(counts) == {"train", "val", "test"}
    assert sum(counts.values()) == 48


def test_published_images_are_the_source_bytes(first_run: Any, source: Path, s3_fs: Any) -> None:
    table = ds.dataset(
        "cli-run/x/releases/v1/parquet", filesystem=s3_fs, format="parquet", partitioning="hive"
    ).to_table(columns=["image_index", "image", "sha256"])
    published = dict(zip(table["image_index"].to_pylist(), table["image"].to_pylist(), strict=True))
    assert published == _source_images(source)
    for digest, png in zip(table["sha256"].to_pylist(), table["image"].to_pylist(), strict=True):
        assert hashlib.sha256(png).hexdigest() == digest


def test_unchanged_source_publishes_nothing_and_skips_extraction(
    first_run: Any, source: Path, s3_stack: StackInfo
) -> None:
    again = cxr(["-v", "run", "--source", str(source), "--store", "s3://cli-run/x"], s3_stack)
    assert again.returncode == 0, again.stderr
    assert "release v1: unchanged" in again.stdout
    assert again.stderr.count("unchanged since its last extraction: skipped") == 12


def test_same_version_with_other_content_is_refused(first_run: Any, source: Path, s3_stack: StackInfo) -> None:
    clash = cxr(
        ["run", "--source", str(source), "--store", "s3://cli-run/x", "--release", "v1", "--seed", "9"], s3_stack
    )
    assert clash.returncode == 1
    assert "release v1 already exists" in clash.stderr
    assert "Traceback" not in clash.stderr


def test_missing_metadata_is_a_clear_error(tmp_path: Path, s3_stack: StackInfo) -> None:
    (tmp_path / "images_001.zip").write_bytes(io.BytesIO().getvalue())
    failed = cxr(["run", "--source", str(tmp_path), "--store", "s3://cli-run/y"], s3_stack)
    assert failed.returncode == 1
    assert "Data_Entry_2017_v2020.csv or Data_Entry_2017.csv not found in" in failed.stderr
