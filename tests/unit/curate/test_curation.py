"""The curate stage on a real S3 store (SeaweedFS from tests/conftest.py) with NIH's own metadata files: what it
keeps in the run's workspace, what it quarantines, and that a blocking defect stops it with the results kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.curate.curation import curate
from pipeline.curate.metadata import load_data_entry
from pipeline.dev.stack import StackInfo
from pipeline.errors import BlockingValidationError
from pipeline.ingest.files import local_ref
from pipeline.ingest.sources import SourceListing
from pipeline.store.layout import run_key
from pipeline.store.storage import Store
from pipeline.store.tables import get_frame, get_json
from tests.reference import BBOX_FILE, DATA_ENTRY_FILE

pytestmark = pytest.mark.integration
RUN = "manual__2026-11-26T00:00:00"


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    return Store(s3_stack.store_config(f"s3://{s3_bucket}/curate"))


@pytest.fixture(scope="module")
def names() -> list[str]:
    return load_data_entry(DATA_ENTRY_FILE.read_bytes(), DATA_ENTRY_FILE.name).frame["image_index"].tolist()


def listing(folder: Path, names: list[str], entry: Path = DATA_ENTRY_FILE) -> SourceListing:
    """The reference Data_Entry and box list, with split lists written here: the test list carries two bad lines."""
    train = folder / "train_val_list.txt"
    train.write_text("\n".join(names[:1500]) + "\n")
    test = folder / "test_list.txt"
    test.write_text("\n".join([*names[1500:], "readme.md", names[1500]]) + "\n")
    refs = [local_ref(path) for path in (entry, BBOX_FILE, train, test)]
    return SourceListing(str(folder), (), refs[0], refs[1], refs[2], refs[3])


def test_curate_keeps_the_tables_and_quarantines_only_the_bad_rows(
    store: Store, tmp_path: Path, names: list[str]
) -> None:
    result = curate(store, listing(tmp_path, names), RUN)
    assert (result.rows, result.bboxes, result.variant) == (2000, 984, "data_entry/bracketed")
    assert result.quarantined_rows == 3
    assert result.file_sha256[BBOX_FILE.name] == hashlib.sha256(BBOX_FILE.read_bytes()).hexdigest()
    assert set(result.file_sha256) == {DATA_ENTRY_FILE.name, BBOX_FILE.name, "train_val_list.txt", "test_list.txt"}

    entry = get_frame(store, run_key(RUN, "data_entry.parquet"))
    assert entry["image_index"].tolist() == names
    boxes = get_frame(store, run_key(RUN, "bboxes.parquet"))
    assert len(boxes) == 984
    assert 986 not in set(boxes["line"])  # the mirror's bogus two-label box
    lists = get_json(store, run_key(RUN, "split_lists.json"))
    assert lists["train_val"] == names[:1500]
    assert lists["test"] == names[1500:]  # 'readme.md' and the repeated line are left out

    rejected = get_frame(store, run_key(RUN, "row_quarantine.parquet"))
    found = {(row["file"], row["line"]): row["reason"] for row in rejected.to_dict("records")}
    assert set(found) == {(BBOX_FILE.name, 986), ("test_list.txt", 501), ("test_list.txt", 502)}
    assert found[(BBOX_FILE.name, 986)] == "label 'Cardiomegaly|Emphysema' is not one of the 8 bounding-box findings"
    assert "'readme.md' is not an image name" in found[("test_list.txt", 501)]
    assert "repeats line 1 of the same list" in found[("test_list.txt", 502)]

    results = get_json(store, run_key(RUN, "validation/results.json"))
    assert (results["ok"], results["quarantined_rows"]) == (True, 3)
    assert results["variants"][BBOX_FILE.name] == "bbox/nih"
    summary = store.get_bytes(run_key(RUN, "validation/summary.txt")).decode()
    assert summary.startswith("validation OK:")
    index = store.get_bytes(run_key(RUN, "validation/data_docs/index.html")).decode()
    assert "label_in_vocabulary" in index
    assert get_json(store, run_key(RUN, "metadata_notes.json")) == {"variant": "data_entry/bracketed", "notes": {}}


def test_a_rerun_gives_the_same_workspace(store: Store, tmp_path: Path, names: list[str]) -> None:
    source = listing(tmp_path, names)
    first = curate(store, source, RUN)
    kept = {name: store.get_bytes(run_key(RUN, name)) for name in ("row_quarantine.parquet", "validation/results.json")}
    assert curate(store, source, RUN) == first
    assert {name: store.get_bytes(run_key(RUN, name)) for name in kept} == kept


def test_a_blocking_defect_stops_curate_with_the_results_kept(store: Store, tmp_path: Path, names: list[str]) -> None:
    text = DATA_ENTRY_FILE.read_text()
    bad = tmp_path / DATA_ENTRY_FILE.name
    bad.write_text(text.replace("00000002_000.png,No Finding", "00000001_000.png,No Finding", 1))
    with pytest.raises(BlockingValidationError, match=r"data_entry\.image_index_unique") as caught:
        curate(store, listing(tmp_path, names, entry=bad), RUN)
    assert not caught.value.report.ok
    results = get_json(store, run_key(RUN, "validation/results.json"))
    assert results["ok"] is False
    assert results["blocking_failures"] >= 1
    assert store.get_bytes(run_key(RUN, "validation/summary.txt")).decode().startswith("validation BLOCKED")
    assert not store.exists(run_key(RUN, "data_entry.parquet"))  # nothing curated is kept from a blocked run
    assert not store.exists(run_key(RUN, "row_quarantine.parquet"))
