"""Accounting at the end of every run: a dropped input or an image whose bytes differ from its recorded
sha256 fails the run, and nothing is published."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import RunConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import AccountingError
from pipeline.ingest import rawzone
from pipeline.publish.latest import read_latest
from pipeline.publish.listing import list_versions
from pipeline.publish.manifest import read_manifest
from pipeline.run import tasks
from pipeline.store.layout import run_prefix
from pipeline.store.storage import Store
from tests.integration.releases import make_source, new_store, run_config
from tests.reliability.figures import record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("accounting") / "mirror", images=40)


def _until_publish(store: Store, source: Path, run_id: str) -> RunConfig:
    cfg = run_config(store, source, run_id, release="v1")
    shard_results = tasks._extract_all(cfg)
    planned = tasks.plan_or_preview(cfg, shard_results, tasks.curate_metadata(cfg))
    for unit in planned["units"]:
        tasks.convert_unit(cfg, unit)
    return cfg


def _nothing_published(store: Store) -> None:
    assert list_versions(store).published == []
    assert read_latest(store) is None


def test_every_published_run_records_its_accounting(source: Path, s3_stack: StackInfo, s3_bucket: str) -> None:
    store = new_store(s3_stack, s3_bucket)
    outcome = tasks.publish_release(_until_publish(store, source, "fine"))
    assert outcome["published"]
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    figures: dict[str, Any] = manifest["accounting"]
    assert figures["input_images"] == figures["published_images"] + figures["quarantined_images"] == 40
    assert figures["parquet_images_checked"] == figures["webdataset_images_checked"] == 40
    record("accounting", "clean_run", figures)


def test_an_input_image_that_vanished_fails_the_run(source: Path, s3_stack: StackInfo, s3_bucket: str) -> None:
    store = new_store(s3_stack, s3_bucket)
    cfg = _until_publish(store, source, "dropped")
    used = tasks._plan(store, cfg).sources["archives_sha256"]["images_001.zip"]  # the archive this run used
    key = f"{rawzone.archive_prefix('images_001.zip', used)}/manifest.parquet"  # one more member: a silent drop
    table = pq.read_table(io.BytesIO(store.get_bytes(key)))
    extra = table.slice(0, 1).to_pylist()[0] | {"image_index": "00099998_000.png", "member": "x/00099998_000.png"}
    buf = io.BytesIO()
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([extra], schema=table.schema)]), buf)
    store.put_bytes(key, buf.getvalue())
    with pytest.raises(AccountingError, match=r"41 input images != 40 published \+ 0 quarantined") as caught:
        tasks.publish_release(cfg)
    _nothing_published(store)
    record("accounting", "dropped_input_error", str(caught.value))


def test_an_image_whose_bytes_differ_from_its_sha256_fails_the_run(
    source: Path, s3_stack: StackInfo, s3_bucket: str
) -> None:
    store = new_store(s3_stack, s3_bucket)
    cfg = _until_publish(store, source, "wrong-sha")
    unit_key = next(info.key for info in store.list(f"{run_prefix('wrong-sha')}/units/"))
    unit = json.loads(store.get_bytes(unit_key))
    unit["digests"][0]["sha256"] = "0" * 64  # the row would claim bytes the image does not have
    store.put_bytes(unit_key, json.dumps(unit).encode())
    with pytest.raises(AccountingError, match=r"1 whose sha256 differs from metadata\.parquet's") as caught:
        tasks.publish_release(cfg)
    _nothing_published(store)
    record("accounting", "wrong_sha_error", str(caught.value))
