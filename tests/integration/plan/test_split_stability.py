"""A patient's split never changes between releases built with the same mode and seed, also when patients are added."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.run import tasks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("stable") / "mirror"
    synthesize(SynthConfig(dest=dest, images=150, image_size=32, seed=11))
    return dest


def _release(mirror: Path, stack: StackInfo, client: Any, store: str, **params: Any) -> dict[str, str]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in stack.env().items():
            mp.setenv(key, value)
        cfg = tasks.config_from_params({"source": str(mirror), "store": store, "release": "v", **params}, "r")
        tasks.run_all(cfg)
    bucket, prefix = store.removeprefix("s3://").split("/", 1)
    body = client.get_object(Bucket=bucket, Key=f"{prefix}/releases/v/metadata.parquet")["Body"].read()
    table = pq.read_table(io.BytesIO(body), columns=["patient_id", "split"])
    return {str(p): s for p, s in zip(table["patient_id"].to_pylist(), table["split"].to_pylist(), strict=True)}


@pytest.mark.parametrize("mode", ["official", "patient-hash"])
def test_adding_shards_adds_patients_without_moving_any(
    mode: str, mirror: Path, s3_stack: StackInfo, s3_client: Any, s3_bucket: str
) -> None:
    common = {"split_mode": mode, "seed": 5, "variant_size": 0}
    few = _release(mirror, s3_stack, s3_client, f"s3://{s3_bucket}/few", shards=["1", "2", "3", "4", "5"], **common)
    every = _release(mirror, s3_stack, s3_client, f"s3://{s3_bucket}/all", **common)
    assert len(every) > len(few) > 0
    moved = {p: (s, every[p]) for p, s in few.items() if every[p] != s}
    assert moved == {}
    assert set(every.values()) == {"train", "val", "test"}
