"""Least privilege and secrets: the consumer identity reads releases but cannot change them; the pipeline's
secret appears nowhere in what a run leaves behind (objects, output, Airflow logs and XCom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.dev.airflow.components import dags_test
from pipeline.dev.airflow.db import migrate
from pipeline.dev.airflow.settings import airflow_env
from pipeline.dev.stack import StackInfo
from pipeline.publish.verify import verify_release
from pipeline.store.client import make_client
from pipeline.store.storage import Store
from tests.integration.releases import cxr, make_source, new_store, store_config
from tests.reliability.figures import record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo, s3_client: Any) -> dict[str, Any]:
    source = make_source(tmp_path_factory.mktemp("access") / "mirror", images=40)
    s3_client.create_bucket(Bucket="reliability-access")
    store = new_store(s3_stack, "reliability-access", "cxr")
    run = cxr(["-v", "run", "--source", str(source), "--store", store.uri(""), "--release", "v1"], s3_stack.env())
    assert run.returncode == 0, run.stderr
    as_json = cxr(["run", "--json", "--source", str(source), "--store", store.uri("")], s3_stack.env())
    assert as_json.returncode == 0, as_json.stderr
    return {"store": store, "outputs": [run.stdout, run.stderr, as_json.stdout, as_json.stderr]}


def _denied(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    code = str(caught.value.response.get("Error", {}).get("Code"))
    assert code == "AccessDenied", code
    return code


def test_consumer_reads_and_lists_a_release_but_cannot_write_or_delete(
    released: dict[str, Any], s3_stack: StackInfo, s3_consumer_client: Any
) -> None:
    bucket, manifest_key = "reliability-access", "cxr/releases/v1/manifest.json"
    consumer = Store(store_config(s3_stack, "s3://reliability-access/cxr", consumer=True), s3_consumer_client)
    report = verify_release(consumer, "latest")  # lists and re-reads every file
    assert report.ok
    assert report.version == "v1"
    checked = cxr(["verify", "--store", "s3://reliability-access/cxr", "--release", "v1"], s3_stack.consumer_env())
    assert checked.returncode == 0, checked.stderr
    before = s3_consumer_client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    attempts = {
        "put over the manifest": _denied(s3_consumer_client.put_object, Bucket=bucket, Key=manifest_key, Body=b"{}"),
        "put a new object": _denied(s3_consumer_client.put_object, Bucket=bucket, Key="cxr/releases/v9/x", Body=b"x"),
        "move latest": _denied(
            s3_consumer_client.put_object, Bucket=bucket, Key="cxr/releases/latest.json", Body=b"{}"
        ),
        "delete the manifest": _denied(s3_consumer_client.delete_object, Bucket=bucket, Key=manifest_key),
        "copy into the release": _denied(
            s3_consumer_client.copy_object,
            Bucket=bucket,
            Key="cxr/releases/v1/copy.json",
            CopySource={"Bucket": bucket, "Key": manifest_key},
        ),
        "create a bucket": _denied(s3_consumer_client.create_bucket, Bucket="consumer-made"),
    }
    bulk = s3_consumer_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": manifest_key}]})
    assert [e["Code"] for e in bulk.get("Errors", [])] == ["AccessDenied"]
    assert s3_consumer_client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read() == before
    assert verify_release(consumer, "v1").ok
    record("least_privilege", "consumer_denied", [*sorted(attempts), "delete_objects (bulk)"])


def _scan(secret: str, places: dict[str, bytes]) -> list[str]:
    return [name for name, body in places.items() if secret.encode() in body]


def test_pipeline_secret_appears_in_no_object_and_no_output(released: dict[str, Any], s3_stack: StackInfo) -> None:
    store: Store = released["store"]
    whole_bucket = Store(store_config(s3_stack, "s3://reliability-access"))
    objects = {info.key: whole_bucket.get_bytes(info.key) for info in whole_bucket.list("")}
    outputs = {f"output {i}": text.encode() for i, text in enumerate(released["outputs"])}
    assert any(key.endswith("releases/v1/manifest.json") for key in objects)
    assert any(key.startswith("cxr/raw/") for key in objects)  # the raw zone and run records are searched too
    for secret in (s3_stack.secret_access_key, s3_stack.consumer_secret_access_key):
        assert _scan(secret, {**objects, **outputs}) == []
    assert store.exists("releases/v1/README.md")
    record("secrets", "cli_run_objects_searched", len(objects))


def test_pipeline_secret_appears_in_no_airflow_log_or_xcom(s3_stack: StackInfo, s3_client: Any, tmp_path: Path) -> None:
    # A real `airflow dags test` in its own process and Airflow home: its printed task logs, every file of the
    # home (the SQLite metadata database holding XCom, task log files) and every object it wrote are searched.
    home, log = tmp_path / "airflow", tmp_path / "dags-test.log"
    env = airflow_env(home, extra=s3_stack.env())
    migrate(env, log)
    source = make_source(tmp_path / "mirror", images=60)
    s3_client.create_bucket(Bucket="reliability-airflow")
    conf = {"source": str(source), "store": "s3://reliability-airflow/cxr", "release": "v1"}
    assert dags_test(env, "nih_cxr_release", conf, log) == 0, log.read_text()[-3000:]
    assert "published release v1" in log.read_text()
    files = {str(p): p.read_bytes() for p in home.rglob("*") if p.is_file()}
    files[str(log)] = log.read_bytes()
    assert any(name.endswith(".db") for name in files)
    client = make_client(s3_stack.store_config())
    objects = client.list_objects_v2(Bucket="reliability-airflow").get("Contents", [])
    bodies = {o["Key"]: client.get_object(Bucket="reliability-airflow", Key=o["Key"])["Body"].read() for o in objects}
    assert _scan(s3_stack.secret_access_key, {**files, **bodies}) == []
    record("secrets", "airflow_files_and_objects_searched", len(files) + len(bodies))
