"""Metadata through a whole run on the real local S3: a partial download publishes, its gaps are reported
apart from what is quarantined (summary, ``--json``, card, manifest), real mismatches are quarantined with
their reasons, validation results and offline Data Docs ship with the release, and a blocking defect in
Data_Entry stops the run before anything is published.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.curate.metadata import load_data_entry
from pipeline.curate.suites import SUITES_DIR
from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.errors import BlockingValidationError
from pipeline.plan.crosscheck import QUARANTINE_REASONS
from pipeline.run import tasks
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration
IMAGES = 60
VERSION = "2026.11.26"
BUCKET = "metadata-release"
UNKNOWN_BOX_IMAGE = "09999999_000.png"


@dataclass
class Source:
    """A synthetic mirror with two archives missing and a few planted mismatches."""

    path: Path
    absent: set[str]  # images of the deleted archives
    landed: set[str]  # images of the archives left
    row_removed: str  # landed image whose Data_Entry row was deleted
    unlisted: str  # landed image removed from its split list
    subset: dict[str, int] = field(default_factory=dict)


def _names_in(archive: Path) -> set[str]:
    with zipfile.ZipFile(archive) as zf:
        return {Path(name).name for name in zf.namelist() if name.endswith(".png")}


def _drop_line(path: Path, starts: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(starts)]
    assert len(kept) == len(lines) - 1, starts
    path.write_text("".join(kept))


def _count(path: Path, names: set[str]) -> int:
    return sum(1 for line in path.read_text().splitlines()[1 if path.suffix == ".csv" else 0 :] if line[:16] in names)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    dest = tmp_path_factory.mktemp("metadata") / "mirror"
    summary = synthesize(SynthConfig(dest=dest, images=IMAGES, image_size=64, seed=11))
    archives = [dest / name for name, _ in summary.shards]
    absent = _names_in(archives[1]) | _names_in(archives[4])
    archives[1].unlink()
    archives[4].unlink()
    landed = set().union(*(_names_in(a) for a in archives if a.exists()))
    boxed = {line[:16] for line in (dest / "BBox_List_2017.csv").read_text().splitlines()[1:]}
    row_removed, unlisted = sorted(landed - boxed)[:2]
    _drop_line(dest / "Data_Entry_2017.csv", row_removed)
    lists = [dest / "train_val_list.txt", dest / "test_list.txt"]
    _drop_line(next(p for p in lists if unlisted in p.read_text()), unlisted)
    box_absent = sorted(absent)[0]
    with (dest / "BBox_List_2017.csv").open("a") as fh:
        fh.write(f"{box_absent},Mass,100.5,200,50,60\n{UNKNOWN_BOX_IMAGE},Nodule,10,10,20,20\n")
    subset = {
        "data_entry_rows": _count(dest / "Data_Entry_2017.csv", absent),
        "bboxes": _count(dest / "BBox_List_2017.csv", absent | {UNKNOWN_BOX_IMAGE}),
        "train_val_entries": _count(lists[0], absent),
        "test_entries": _count(lists[1], absent),
    }
    return Source(dest, absent, landed, row_removed, unlisted, subset)


def _config(source: Path, run_id: str, release: str) -> Any:
    params = {"source": str(source), "store": f"s3://{BUCKET}/cxr", "release": release}
    return tasks.config_from_params(params, run_id=run_id)


@pytest.fixture(scope="module")
def published(aws_env: None, source: Source) -> dict[str, Any]:
    cfg = _config(source.path, "metadata-subset", VERSION)
    summary = tasks.run_all(cfg)
    store = Store(cfg.store)
    manifest = json.loads(store.get_bytes(f"releases/{VERSION}/manifest.json"))
    return {"summary": summary, "store": store, "manifest": manifest}


def _release_frame(store: Store, name: str) -> pd.DataFrame:
    frame: pd.DataFrame = pq.read_table(io.BytesIO(store.get_bytes(f"releases/{VERSION}/{name}"))).to_pandas()
    return frame


def test_a_partial_download_publishes_and_counts_what_is_absent(published: dict[str, Any], source: Source) -> None:
    manifest = published["manifest"]
    assert published["summary"]["published"] is True
    assert manifest["subset"] == {**source.subset, "layer_rows": 0}  # no annotation layer in this run
    assert manifest["subset"]["data_entry_rows"] == len(source.absent)
    assert manifest["subset"]["bboxes"] >= 1
    assert manifest["images"] == len(source.landed) - 2


def test_real_mismatches_are_quarantined_with_their_reasons(published: dict[str, Any], source: Source) -> None:
    manifest = published["manifest"]
    expected = {"image_without_row": 1, "image_in_no_split_list": 1, "list_entry_without_row": 1}
    assert manifest["quarantine_reasons"] == {**dict.fromkeys(manifest["quarantine_reasons"], 0), **expected}
    assert set(QUARANTINE_REASONS) <= set(manifest["quarantine_reasons"])
    assert manifest["quarantined"] == 3
    quarantine = _release_frame(published["store"], "quarantine.parquet")
    assert len(quarantine) == 3
    by_image = dict(zip(quarantine["image_index"] + "/" + quarantine["reason_code"], quarantine["reason"], strict=True))
    assert by_image[f"{source.row_removed}/image_without_row"] == "image has no Data_Entry row (Data_Entry_2017.csv)"
    assert f"{source.row_removed}/list_entry_without_row" in by_image
    assert by_image[f"{source.unlisted}/image_in_no_split_list"].startswith("image is in neither")
    assert not any("subset" in reason for reason in quarantine["reason"])
    # a box of an image that neither this source nor Data_Entry holds is a reference to absent data, not a loss
    report = json.loads(published["store"].get_bytes(f"releases/{VERSION}/validation/crosscheck.json"))
    unknown = [e for e in report["subset"]["bboxes"]["examples"] if e["image_index"] == UNKNOWN_BOX_IMAGE]
    assert unknown[0]["reason"] == "box: image not in this source (subset); not in Data_Entry_2017.csv either"


def _not_in_source(source: Source) -> dict[str, int]:
    subset = source.subset
    lists = subset["train_val_entries"] + subset["test_entries"]
    boxes = subset["bboxes"]
    return {"data_entry_rows": subset["data_entry_rows"], "boxes": boxes, "split_list_names": lists, "layer_rows": 0}


QUARANTINED_BY_KIND = {"images": 2, "box_rows": 0, "split_list_rows": 1, "layer_rows": 0}


def test_quarantined_items_are_reported_apart_from_what_the_source_lacks(
    published: dict[str, Any], source: Source
) -> None:
    summary, manifest = published["summary"], published["manifest"]
    absent = _not_in_source(source)
    assert min(n for kind, n in absent.items() if kind != "layer_rows") > 0
    for where in (summary, manifest):
        assert where["quarantined_by_kind"] == QUARANTINED_BY_KIND
        assert where["not_in_source"] == absent
        assert where["quarantined"] == 3
    card = published["store"].get_bytes(f"releases/{VERSION}/README.md").decode()
    listed = "left out of the release and listed with their reason in `quarantine.parquet`"
    assert f"| items quarantined | 3 | {listed}: 2 images, 1 split-list row |" in card
    words = (
        f"{absent['split_list_names']:,} split-list names, {absent['boxes']:,} boxes, "
        f"{absent['data_entry_rows']:,} Data_Entry rows"
    )
    total = sum(absent.values())
    assert f"| references to images not in this source (subset) | {total:,} | {words} name images" in card


def test_cli_summary_and_json_name_quarantine_and_subset_apart(
    published: dict[str, Any], source: Source, s3_stack: StackInfo
) -> None:
    args = ["run", "--source", str(source.path), "--store", f"s3://{BUCKET}/cli", "--release", VERSION]
    shown = releases.cxr(args, s3_stack.env())
    assert shown.returncode == 0, shown.stderr
    absent = _not_in_source(source)
    lines = shown.stdout.splitlines()
    assert lines[0] == f"release {VERSION}: published"
    assert "  quarantined: 2 images, 1 split-list row" in lines
    assert (
        f"  not in this source (subset): {absent['split_list_names']:,} split-list names, {absent['boxes']:,} boxes, "
        f"{absent['data_entry_rows']:,} Data_Entry rows"
    ) in lines
    again = releases.cxr([*args, "--json"], s3_stack.env())
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["published"] is False  # unchanged inputs: the same figures, nothing new
    assert (data["quarantined"], data["quarantined_by_kind"], data["not_in_source"]) == (3, QUARANTINED_BY_KIND, absent)


def test_published_rows_are_the_source_rows(published: dict[str, Any], source: Source) -> None:
    meta = _release_frame(published["store"], "metadata.parquet").set_index("image_index").sort_index()
    rows = load_data_entry((source.path / "Data_Entry_2017.csv").read_bytes(), "Data_Entry_2017.csv").frame
    rows = rows[rows["image_index"].isin(source.landed - {source.unlisted})].set_index("image_index").sort_index()
    assert list(meta.index) == list(rows.index)
    for column in ("patient_id", "follow_up", "age_years", "sex", "view_position", "original_width"):
        assert meta[column].tolist() == rows[column].astype(object).tolist(), column
    assert [list(v) for v in meta["labels"]] == [list(v) for v in rows["labels"]]


def test_validation_results_and_offline_data_docs_ship_with_the_release(
    published: dict[str, Any], source: Source
) -> None:
    store, manifest = published["store"], published["manifest"]
    paths = {f["path"] for f in manifest["files"]}
    pages = ["index.html", "data_entry.html", "bbox.html", "split_lists.html"]
    wanted = {"validation/results.json", "validation/summary.txt", "validation/crosscheck.json"}
    assert wanted | {f"validation/data_docs/{page}" for page in pages} <= paths
    results = json.loads(store.get_bytes(f"releases/{VERSION}/validation/results.json"))
    assert results["ok"] is True
    assert [o["check"] for o in results["outcomes"] if not o["success"]] == ["image_known", "name_known"]
    crosscheck = json.loads(store.get_bytes(f"releases/{VERSION}/validation/crosscheck.json"))
    assert {code: item["count"] for code, item in crosscheck["subset"].items()} == source.subset
    index = store.get_bytes(f"releases/{VERSION}/validation/data_docs/index.html").decode()
    for suite in ("data_entry", "bbox", "split_lists"):
        for spec in json.loads((SUITES_DIR / f"{suite}.json").read_text())["expectations"]:
            assert f">{spec['meta']['check']}<" in index
    for page in pages:
        body = store.get_bytes(f"releases/{VERSION}/validation/data_docs/{page}").decode()
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", body, re.IGNORECASE), page


def test_a_blocking_defect_stops_the_run_before_anything_is_published(
    published: dict[str, Any], source: Source, tmp_path: Path
) -> None:
    store: Store = published["store"]
    bad = tmp_path / "bad-source"
    shutil.copytree(source.path, bad)
    entry = bad / "Data_Entry_2017.csv"
    lines = entry.read_text().splitlines(keepends=True)
    number, line = next((i, text) for i, text in enumerate(lines) if ",No Finding," in text)
    lines[number] = line.replace(",No Finding,", ",No Finding|Mass,", 1)
    entry.write_text("".join(lines))
    releases_before = sorted(item.key for item in store.list("releases/"))
    latest_before = store.get_bytes("releases/latest.json")

    with pytest.raises(BlockingValidationError) as caught:
        tasks.run_all(_config(bad, "metadata-blocked", "2026.11.27"))

    message = str(caught.value)
    assert "data_entry.no_finding_alone (expect_column_values_to_be_in_set on no_finding_alone)" in message
    assert f"1 of {len(lines) - 1} rows fail" in message
    assert f"line={number + 1}, image_index='{line[:16]}'" in message
    assert "labels=['No Finding', 'Mass']" in message
    assert sorted(item.key for item in store.list("releases/")) == releases_before
    assert store.get_bytes("releases/latest.json") == latest_before
    kept = json.loads(store.get_bytes("runs/metadata-blocked/validation/results.json"))
    assert kept["ok"] is False
    assert store.exists("runs/metadata-blocked/validation/data_docs/index.html")
