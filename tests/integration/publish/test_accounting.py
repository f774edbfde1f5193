"""The end-of-run accounting on a real run converted into the local S3 endpoint, checked before publishing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.convert.units import digest_table
from pipeline.dev.stack import StackInfo
from pipeline.errors import AccountingError
from pipeline.plan.planning import Plan, Unit, build_plan
from pipeline.publish import accounting
from pipeline.publish.finish import metadata_table
from pipeline.run import tasks
from pipeline.store import layout
from pipeline.store.storage import Store
from pipeline.store.tables import get_json
from tests.integration import releases

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def converted(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 30-image run extracted, planned and converted, not yet published: what accounting is handed."""
    source = releases.make_source(tmp_path_factory.mktemp("accounting") / "source", images=30, seed=8)
    store = releases.new_store(s3_stack, "publish-accounting")
    cfg = releases.run_config(store, Path(source), "counted", release="v1")
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    plan = build_plan(store, cfg, shards, tasks.curate_metadata(cfg))
    for unit in plan.units:
        tasks.convert_unit(cfg, unit)
    results = [get_json(store, layout.unit_key(plan.run_id, Unit(**unit).name)) for unit in plan.units]
    digests = digest_table([d for r in results for d in r["digests"]])
    meta = metadata_table(store, plan, digests).to_pandas()
    return {"store": store, "plan": plan, "meta": meta, "files": [f for r in results for f in r["files"]]}


def _check(converted: dict[str, Any], meta: pd.DataFrame) -> accounting.Accounting:
    store: Store = converted["store"]
    plan: Plan = converted["plan"]
    return accounting.check(store, plan, meta, converted["files"])


def test_a_sound_run_adds_up_and_every_image_is_checked_in_both_formats(converted: dict[str, Any]) -> None:
    figures = _check(converted, converted["meta"])
    assert figures.input_images == figures.published_images + figures.quarantined_images
    assert figures.published_images == len(converted["meta"]) == sum(converted["plan"].counts.values())
    assert figures.parquet_images_checked == figures.webdataset_images_checked == figures.published_images
    rows_out = figures.rows_published + figures.rows_with_quarantined_image + figures.rows_absent_from_source
    assert figures.data_entry_rows == rows_out
    assert set(figures.to_dict()) >= {"input_images", "published_images", "quarantined_images"}


def test_an_image_missing_from_the_release_rows_fails_with_the_figures(converted: dict[str, Any]) -> None:
    meta = converted["meta"].iloc[1:]  # one converted image left out of metadata.parquet
    n = len(converted["meta"])
    with pytest.raises(AccountingError, match=rf"release v1: accounting failed, nothing was published: .*{n - 1} "):
        _check(converted, meta)


def test_a_row_whose_sha256_is_not_its_bytes_fails_naming_the_image(converted: dict[str, Any]) -> None:
    meta = converted["meta"].copy()
    meta.loc[meta.index[0], "sha256"] = "0" * 64
    image = str(meta.iloc[0]["image_index"])
    with pytest.raises(
        AccountingError, match=rf"1 whose sha256 differs from metadata.parquet's \(e.g. \['{image}'\]\)"
    ):
        _check(converted, meta)


def test_a_shard_whose_sample_count_differs_from_its_parquet_rows_fails_naming_it(converted: dict[str, Any]) -> None:
    files = [dict(f) for f in converted["files"]]
    tar = next(f for f in files if f["kind"] == "wds" and f["rows"] > 0)
    tar["rows"] -= 1  # its writer counted one sample fewer than the unit's Parquet files hold
    with pytest.raises(AccountingError, match=rf"{tar['path']} \({tar['rows']} samples, {tar['rows'] + 1} Parquet"):
        accounting.check(converted["store"], converted["plan"], converted["meta"], files)


def test_the_check_downloads_no_release_file_whole(converted: dict[str, Any]) -> None:
    store: Store = converted["store"]
    whole: list[str] = []
    real = {name: getattr(store, name) for name in ("get_bytes", "open_stream")}

    def counted(name: str) -> Any:
        def call(rel: str) -> Any:
            whole.append(rel)
            return real[name](rel)

        return call

    for name in real:
        setattr(store, name, counted(name))  # the real reads, recorded
    try:
        figures = _check(converted, converted["meta"])
    finally:
        for name in real:
            delattr(store, name)
    assert figures.parquet_images_checked == len(converted["meta"])
    written = {str(f["path"]) for f in converted["files"]}
    assert written & set(whole) == set()  # only names and digests were read, by ranged GETs
