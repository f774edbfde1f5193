"""The README's reader recipes, run as written against a real published release.

Each ``# recipe: NAME`` block of the README's "Reading a release" section runs as its own Python process with
only the consumer's read/list credentials and ``CXR_STORE`` in its environment, as an ML team would run it.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import ReleaseNotFoundError
from pipeline.publish.manifest import read_manifest
from pipeline.read.client import ReleaseClient
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[3] / "README.md"
URI = "s3://consumers/cxr"
VERSION = "2026.11.26"


def readme_recipes() -> dict[str, str]:
    """``# recipe: NAME`` code blocks of the README's "Reading a release" section."""
    text = README.read_text()
    section = text[text.index("## Reading a release") : text.index("\n## ", text.index("## Reading a release") + 5)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return {b.split("\n", 1)[0].removeprefix("# recipe:").strip(): b for b in blocks if b.startswith("# recipe:")}


@pytest.fixture(scope="module")
def release(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = releases.make_source(tmp_path_factory.mktemp("consumers") / "source", images=60, seed=21)
    store = releases.new_store(s3_stack, "consumers")
    releases.publish(store, source, "consumers", logical_date="2026-11-26T02:00:00+00:00")
    meta = pq.read_table(io.BytesIO(store.get_bytes(f"releases/{VERSION}/metadata.parquet"))).to_pandas()
    return {"store": store, "meta": meta, "manifest": read_manifest(store, VERSION)}


def run_recipe(name: str, stack: StackInfo, workdir: Path, store: str = URI) -> subprocess.CompletedProcess[str]:
    """Run one README recipe as its own process, with only the consumer's keys and ``CXR_STORE=store``."""
    script = workdir / f"recipe_{name}.py"
    script.write_text(readme_recipes()[name])
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CXR_", "HF_"))}
    env = {**keep, **stack.consumer_env(), "CXR_STORE": store, "HF_HOME": str(workdir / "hf")}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"recipe {name} failed:\n{done.stderr[-3000:]}"
    return done


def _split_counts(meta: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in meta["split"].value_counts().items()}


def test_readme_has_every_recipe() -> None:
    layers = {"layers-pandas", "layers-duckdb", "layers-torch"}  # run in tests/integration/layers/test_release.py
    readers = {"pandas", "pyarrow", "duckdb", "datasets", "webdataset", "torch", "torch-dataset", "select"}
    assert set(readme_recipes()) == readers | layers


def test_pandas_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    meta = release["meta"]
    out = run_recipe("pandas", s3_stack, tmp_path).stdout
    assert f"{VERSION} {len(meta)} images; {int((meta['split'] == 'train').sum())} train" in out
    assert str(meta.groupby("split")["patient_id"].nunique().to_dict()) in out


def test_pyarrow_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    train = release["meta"][release["meta"]["split"] == "train"]
    out = run_recipe("pyarrow", s3_stack, tmp_path).stdout
    assert f"{len(train)} train images, {int(train['effusion'].sum())} with effusion" in out


def test_duckdb_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    meta = release["meta"]
    grouped = meta.groupby("split").agg(images=("image_id", "size"), patients=("patient_id", "nunique"))
    expected = [(str(s), int(r.images), int(r.patients)) for s, r in grouped.sort_index().iterrows()]
    assert run_recipe("duckdb", s3_stack, tmp_path).stdout.strip() == str(expected)


def test_datasets_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    meta = release["meta"]
    out = run_recipe("datasets", s3_stack, tmp_path).stdout
    assert re.search(r"^streamed \d{8}_\d{3} \(64, 64\)$", out, flags=re.MULTILINE), out
    counts = _split_counts(meta)
    assert str({s: counts.get(s, 0) for s in ("train", "val", "test")}) in out


def test_webdataset_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    train = int((release["meta"]["split"] == "train").sum())
    out = run_recipe("webdataset", s3_stack, tmp_path).stdout
    assert re.search(rf"^{train} samples; last \d{{8}}_\d{{3}} L \(64, 64\) \[[01, ]+\] train$", out, re.MULTILINE), out


def test_torch_dataloader_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    train = int((release["meta"]["split"] == "train").sum())
    out = run_recipe("torch", s3_stack, tmp_path).stdout
    assert f"{train} train images; shapes [((1, 64, 64), (15,))]" in out


def test_torch_dataset_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    meta = release["meta"]
    pa_train = int(((meta["split"] == "train") & (meta["view_position"] == "PA")).sum())
    out = run_recipe("torch-dataset", s3_stack, tmp_path).stdout
    assert f"{pa_train} PA train images; 15 labels: atelectasis, cardiomegaly, consolidation ..." in out


def test_select_recipe(release: dict[str, Any], s3_stack: StackInfo, tmp_path: Path) -> None:
    meta = release["meta"]
    train = meta[meta["split"] == "train"]
    patients = train.loc[train["view_position"] == "PA", "patient_id"].nunique()
    found = train["effusion"] | train["pleural_thickening"]
    sick = int((found & (train["age_years"] >= 18)).sum())
    out = run_recipe("select", s3_stack, tmp_path).stdout
    assert f"{patients} PA patients; {sick} adult images with effusion or pleural thickening; {sick}" in out
    assert re.search(r"^\d{8}_\d{3} True True$", out, re.MULTILINE), out


def test_client_takes_endpoint_and_keys_as_arguments(release: dict[str, Any], s3_stack: StackInfo) -> None:
    client = ReleaseClient(
        URI,
        endpoint_url=s3_stack.endpoint_url,
        access_key_id=s3_stack.consumer_access_key_id,
        secret_access_key=s3_stack.consumer_secret_access_key,
    )
    opened = client.open()
    assert opened.version == VERSION
    assert opened.counts() == release["manifest"]["counts"]
    assert opened.to_pandas("val")["split"].unique().tolist() in ([], ["val"])
    assert len(opened.shard_urls("test", how="pipe")) == len(opened.shard_urls("test"))


def test_client_never_opens_a_version_without_manifest(release: dict[str, Any], s3_stack: StackInfo) -> None:
    store: Store = release["store"]
    store.put_bytes("releases/2026.11.27/_claim.json", b"{}")
    store.put_bytes("releases/2026.11.27/metadata.parquet", b"half written")
    client = ReleaseClient(URI, **_consumer_kwargs(s3_stack))
    assert client.versions() == [VERSION]
    assert client.versions(include_incomplete=True) == [VERSION, "2026.11.27"]
    with pytest.raises(ReleaseNotFoundError, match=r"release 2026.11.27 is being written \(no manifest yet\)"):
        client.open("2026.11.27")
    assert client.resolve("latest") == VERSION


def test_pipe_shard_urls_stream_the_shard(
    release: dict[str, Any], s3_stack: StackInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webdataset as wds

    for key, value in s3_stack.consumer_env().items():  # the pipe: command reads the standard AWS_* variables
        monkeypatch.setenv(key, value)
    urls = ReleaseClient(URI).open().shard_urls("test", how="pipe")
    keys = [sample["__key__"] for sample in wds.WebDataset(urls, shardshuffle=False)]
    assert len(keys) == release["manifest"]["counts"]["test"]


def _consumer_kwargs(stack: StackInfo) -> dict[str, str]:
    return {
        "endpoint_url": stack.endpoint_url,
        "access_key_id": stack.consumer_access_key_id,
        "secret_access_key": stack.consumer_secret_access_key,
    }
