"""The release DAG runs end to end with dag.test() against the real local S3, and the release reads back."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from pipeline import provenance
from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize

pytestmark = pytest.mark.integration
IMAGES = 90


@pytest.fixture(scope="module")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("mirror") / "source"
    synthesize(SynthConfig(dest=dest, images=IMAGES, image_size=64, seed=7))
    (dest / "relabels.csv").write_bytes((dest / "Data_Entry_2017.csv").read_bytes())  # a label version, as a layer
    return dest


@pytest.fixture(scope="module")
def aws_env(s3_stack: StackInfo) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_stack.env().items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def dag_run(airflow_db: None, aws_env: None, synthetic_source: Path, s3_client: Any) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    s3_client.create_bucket(Bucket="e2e")
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags")).dags["nih_cxr_release"]
    # The default deadline is declared, as in production: a test run must still finish (apache/airflow#73428).
    assert dag.deadline, "the release DAG declares its deadline alert by default"
    conf = {"source": str(synthetic_source), "store": "s3://e2e/cxr", "release": "2026.11.26"}
    run = dag.test(run_conf={**conf, "annotations": ["team=relabels.csv"]})
    assert dag.deadline, "a test run leaves the DAG's deadline as it found it"
    logical = run.logical_date or run.run_after  # the DAG records the run's run_after when it has no logical date
    return {"state": str(run.state), "source": synthetic_source, "run_id": run.run_id, "logical_date": logical}


def test_dag_run_succeeds(dag_run: dict[str, Any]) -> None:
    assert dag_run["state"].endswith("success")


def test_release_has_every_synthetic_image_once_with_patient_level_splits(dag_run: dict[str, Any], s3_fs: Any) -> None:
    table = ds.dataset(
        "e2e/cxr/releases/2026.11.26/parquet", filesystem=s3_fs, format="parquet", partitioning="hive"
    ).to_table(columns=["image_id", "patient_id", "labels", "split", "image"])
    assert table.num_rows == IMAGES
    frame = table.to_pandas()
    assert frame["image_id"].is_unique
    assert (frame.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(frame["split"]) <= {"train", "val", "test"}
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in frame["image"])
    names = {line.strip()[:-4] for line in (dag_run["source"] / "test_list.txt").read_text().split()}
    assert set(frame.loc[frame["split"] == "test", "image_id"]) == names


def test_latest_names_the_release_and_manifest_lists_webdataset_shards(dag_run: dict[str, Any], s3_client: Any) -> None:
    latest = json.loads(s3_client.get_object(Bucket="e2e", Key="cxr/releases/latest.json")["Body"].read())
    assert latest["version"] == "2026.11.26"
    manifest = json.loads(
        s3_client.get_object(Bucket="e2e", Key="cxr/releases/2026.11.26/manifest.json")["Body"].read()
    )
    assert sum(manifest["counts"].values()) == IMAGES
    tars = [f for f in manifest["files"] if f["path"].endswith(".tar")]
    assert tars
    assert all(f["path"].startswith("webdataset/") for f in tars)
    assert sum(f["rows"] for f in tars) == IMAGES
    assert os.path.basename(tars[0]["path"]).split("-")[0] in {"train", "val", "test"}


def test_the_annotations_param_publishes_its_layer(dag_run: dict[str, Any], s3_client: Any, s3_fs: Any) -> None:
    manifest = json.loads(
        s3_client.get_object(Bucket="e2e", Key="cxr/releases/2026.11.26/manifest.json")["Body"].read()
    )
    (layer,) = manifest["annotations"]
    assert (layer["id"], layer["kind"], layer["images_covered"]) == ("team", "label_version", IMAGES)
    rows = ds.dataset("e2e/cxr/releases/2026.11.26/metadata.parquet", filesystem=s3_fs).to_table().to_pylist()
    assert all(sorted(r["team"]["labels"]) == sorted(r["labels"]) for r in rows)


def test_manifest_records_provenance(dag_run: dict[str, Any], s3_client: Any) -> None:
    manifest = json.loads(
        s3_client.get_object(Bucket="e2e", Key="cxr/releases/2026.11.26/manifest.json")["Body"].read()
    )
    made_by = manifest["provenance"]
    assert (made_by["orchestrator"], made_by["run_id"]) == ("airflow", dag_run["run_id"])
    assert dt.datetime.fromisoformat(made_by["logical_date"]) == dag_run["logical_date"]
    assert made_by["pipeline_version"] == manifest["pipeline_version"]
    if made_by["bundle_version"] is None:  # dag.test() runs tasks without a bundle: the code is named by its commit
        here = provenance.code_commit()
        assert (made_by["code"] or {}).get("commit") == (here or {}).get("commit")
