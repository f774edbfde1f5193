"""Row-level defects of the auxiliary files (box list, split lists) cost their row, never the release; metadata
files over their size limit are refused before they are read. Every source is built here, on the fly, except
the real mirror's box list (``tests/data/nih-reference/BBox_List_2017.csv``, which carries one bad row).
"""

from __future__ import annotations

import io
import json
import resource
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.dev.stack import StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.errors import FileTooLargeError
from pipeline.run import tasks
from pipeline.store.storage import Store
from tests.integration import releases
from tests.reference import BBOX_FILE

pytestmark = pytest.mark.integration
BUCKET = "auxiliary-rows"
VERSION = "v1"
ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
)
BAD_REAL_ROW = "label 'Cardiomegaly|Emphysema' is not one of the 8 bounding-box findings"


def _run(source: Path, prefix: str, release: str = VERSION) -> tuple[dict[str, Any], Store]:
    params = {"source": str(source), "store": f"s3://{BUCKET}/{prefix}", "release": release}
    cfg = tasks.config_from_params(params, run_id=f"run-{prefix}")
    return tasks.run_all(cfg), Store(cfg.store)


def _frame(store: Store, name: str) -> pd.DataFrame:
    frame: pd.DataFrame = pq.read_table(io.BytesIO(store.get_bytes(f"releases/{VERSION}/{name}"))).to_pandas()
    return frame


def _manifest(store: Store) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(store.get_bytes(f"releases/{VERSION}/manifest.json"))
    return manifest


def _png(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (64, 64), value % 256).save(out, format="PNG")
    return out.getvalue()


def _entry_row(name: str, labels: str) -> str:
    return f"{name},{labels},{int(name[9:12])},{int(name[:8])},50,M,PA,1024,1024,0.143,0.143\n"


@pytest.fixture(scope="module")
def real_box_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every image the real box list names (and one train_val image), a Data_Entry row for each, the real list."""
    dest = tmp_path_factory.mktemp("real-boxes")
    boxes = pd.read_csv(BBOX_FILE, usecols=[0, 1], names=["image", "label"], header=0)
    labels: dict[str, set[str]] = {}
    for image, label in zip(boxes["image"], boxes["label"], strict=True):
        labels.setdefault(image, set()).update(str(label).replace("Infiltrate", "Infiltration").split("|"))
    train = [f"000999{n:02d}_000.png" for n in range(20)]
    names = sorted(labels)
    with zipfile.ZipFile(dest / "images_001.zip", "w") as archive:
        for number, name in enumerate([*names, *train]):
            archive.writestr(f"images/{name}", _png(number))
    rows = [_entry_row(name, "|".join(sorted(labels[name]))) for name in names]
    rows += [_entry_row(name, "No Finding") for name in train]
    (dest / "Data_Entry_2017.csv").write_text(ENTRY_HEADER + "".join(rows))
    (dest / "test_list.txt").write_text("\n".join(names) + "\n")
    (dest / "train_val_list.txt").write_text("\n".join(train) + "\n")
    (dest / "BBox_List_2017.csv").write_bytes(BBOX_FILE.read_bytes())
    return dest


def test_the_real_box_list_publishes_with_its_one_bad_row_quarantined(aws_env: None, real_box_source: Path) -> None:
    summary, store = _run(real_box_source, "real-boxes")
    assert summary["published"] is True
    assert summary["quarantined_by_kind"] == {"images": 0, "box_rows": 1, "split_list_rows": 0, "layer_rows": 0}
    manifest = _manifest(store)
    assert manifest["quarantine_reasons"]["bbox_row_defect"] == 1
    assert manifest["quarantined"] == 1
    quarantine = _frame(store, "quarantine.parquet")
    assert quarantine[["source", "member", "image_index", "reason_code"]].to_dict("records") == [
        {"source": "BBox_List_2017.csv", "member": "line 986", "image_index": "00000001_001.png",
         "reason_code": "bbox_row_defect"},
    ]  # fmt: skip
    assert quarantine["reason"][0] == f"{BAD_REAL_ROW} (BBox_List_2017.csv line 986)"
    meta = _frame(store, "metadata.parquet").set_index("image_index")
    assert sum(len(b) for b in meta["bboxes"]) == 984  # every other box attached to its image
    assert len(meta["bboxes"]["00000001_001.png"]) == 0  # its image is published, without the bad box
    assert {b["label"] for b in meta["bboxes"]["00013118_008.png"]} >= {"Atelectasis"}
    results = json.loads(store.get_bytes(f"releases/{VERSION}/validation/results.json"))
    assert (results["ok"], results["quarantined_rows"]) == (True, 1)
    assert [o["check"] for o in results["outcomes"] if not o["success"]] == ["label_in_vocabulary"]
    card = store.get_bytes(f"releases/{VERSION}/README.md").decode()
    assert "| box list row with a defect (label, image name, coordinates or a repeat) | 1 |" in card
    assert "1 box row |" in card


@pytest.fixture(scope="module")
def defective_source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A synthetic mirror whose box list and split lists carry one row of each defect class."""
    dest = tmp_path_factory.mktemp("defects") / "mirror"
    synthesize(SynthConfig(dest=dest, images=60, image_size=64, seed=11))
    box_list, train_list, test_list = dest / "BBox_List_2017.csv", dest / "train_val_list.txt", dest / "test_list.txt"
    train = train_list.read_text().split()
    original = [line for line in box_list.read_text().splitlines()[1:] if line.strip()]
    boxed = {line[:16] for line in original}
    image, in_both = [name for name in train if name not in boxed][:2]
    good = [f"{name},Nodule,{10 + n},20,30,40\n" for n, name in enumerate(train[2:14]) if name not in (image, in_both)]
    first_box = original[0]
    defects = {
        "bad label": f"{image},Cardiomegaly|Emphysema,10,10,50,50",
        "not a number": f"{image},Mass,ten,10,50,50",
        "negative": f"{image},Mass,-5,10,50,50",
        "outside": f"{image},Mass,1000,10,50,50",
        "repeat": first_box,
        "bad name": "images/00000001_000.png,Mass,1,1,1,1",
    }
    text = box_list.read_text().rstrip("\n") + "\n" + "".join(good) + "\n".join(defects.values()) + "\n"
    box_list.write_text(text)
    rows = text.splitlines()
    box_lines = {what: max(i for i, line in enumerate(rows, 1) if line == row) for what, row in defects.items()}
    train_text = train_list.read_text().rstrip("\n") + f"\nREADME.md\n{train[0]}\n"
    train_list.write_text(train_text)
    test_list.write_text(test_list.read_text().rstrip("\n") + f"\n{in_both}\n")
    lines = train_text.splitlines()
    return {
        "path": dest, "image": image, "in_both": in_both, "box_lines": box_lines, "good": len(original) + len(good),
        "list_lines": {"README": len(lines) - 1, "repeat": len(lines), "in_both": lines.index(in_both) + 1,
                       "in_both_test": len(test_list.read_text().splitlines())},
    }  # fmt: skip


def test_each_auxiliary_row_defect_is_quarantined_and_the_release_publishes(
    aws_env: None, defective_source: dict[str, Any]
) -> None:
    summary, store = _run(defective_source["path"], "defects")
    assert summary["published"] is True
    assert summary["quarantined_by_kind"] == {"images": 1, "box_rows": 6, "split_list_rows": 4, "layer_rows": 0}
    manifest = _manifest(store)
    reasons = manifest["quarantine_reasons"]
    assert (reasons["bbox_row_defect"], reasons["split_list_row_defect"], reasons["image_in_no_split_list"]) == (
        6,
        4,
        1,
    )
    quarantine = _frame(store, "quarantine.parquet")
    by_place = {(r["source"], r["member"]): r for r in quarantine.to_dict("records")}
    box, lists = defective_source["box_lines"], defective_source["list_lines"]
    expected = {
        ("BBox_List_2017.csv", box["bad label"]): "label 'Cardiomegaly|Emphysema' is not one of the 8",
        ("BBox_List_2017.csv", box["not a number"]): "box x is not a number",
        ("BBox_List_2017.csv", box["negative"]): "box x -5.0 is negative (outside the image)",
        ("BBox_List_2017.csv", box["outside"]): "box ends at x 1050.0 (x + w), outside the 1024-pixel image",
        ("BBox_List_2017.csv", box["repeat"]): "the same box (image, label, x, y, w, h) as line 2",
        ("BBox_List_2017.csv", box["bad name"]): "image name 'images/00000001_000.png' is not <8-digit patient>",
        ("train_val_list.txt", lists["README"]): "'README.md' is not an image name",
        ("train_val_list.txt", lists["repeat"]): "repeats line 1 of the same list",
        ("train_val_list.txt", lists["in_both"]): "is in both train_val_list.txt and test_list.txt",
        ("test_list.txt", lists["in_both_test"]): "is in both train_val_list.txt and test_list.txt",
    }
    for (source, line), reason in expected.items():
        row = by_place[(source, f"line {line}")]
        assert reason in row["reason"], (source, line, row["reason"])
        assert row["reason"].endswith(f"({source} line {line})")
    unlisted = quarantine[quarantine["reason_code"] == "image_in_no_split_list"].iloc[0]
    assert unlisted["image_index"] == defective_source["in_both"]
    assert unlisted["reason"].startswith("its split-list line is quarantined: ")
    meta = _frame(store, "metadata.parquet").set_index("image_index")
    assert defective_source["in_both"] not in meta.index
    assert list(meta["bboxes"][defective_source["image"]]) == []  # none of its defective boxes is attached
    assert sum(len(b) for b in meta["bboxes"]) == defective_source["good"]
    results = json.loads(store.get_bytes(f"releases/{VERSION}/validation/results.json"))
    assert (results["ok"], results["blocking_failures"], results["quarantined_rows"]) == (True, 0, 10)
    card = store.get_bytes(f"releases/{VERSION}/README.md").decode()
    assert "| split-list line with a defect (not an image name, a repeat, or in both lists) | 4 |" in card
    assert "1 image, 6 box rows, 4 split-list rows |" in card


def test_cxr_validate_lists_the_rows_and_exits_0(defective_source: dict[str, Any], s3_stack: StackInfo) -> None:
    path: Path = defective_source["path"]
    files = [str(path / name) for name in ("Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt")]
    shown = releases.cxr(["validate", *files, str(path / "test_list.txt")], {})
    assert shown.returncode == 0, shown.stderr
    assert "0 blocking failures" in shown.stdout
    assert "10 rows quarantined" in shown.stdout
    assert f"BBox_List_2017.csv line {defective_source['box_lines']['bad label']} ({defective_source['image']})" in (
        shown.stdout
    )
    assert "Traceback" not in shown.stderr


def test_a_data_entry_row_defect_still_blocks_cxr_validate(defective_source: dict[str, Any], tmp_path: Path) -> None:
    entry = (defective_source["path"] / "Data_Entry_2017.csv").read_text().splitlines(keepends=True)
    entry[1] = entry[1].replace(",M,", ",X,", 1) if ",M," in entry[1] else entry[1].replace(",F,", ",X,", 1)
    bad = tmp_path / "Data_Entry_2017.csv"
    bad.write_text("".join(entry))
    shown = releases.cxr(["validate", str(bad), str(defective_source["path"] / "BBox_List_2017.csv")], {})
    assert shown.returncode == 1, shown.stdout
    assert "[blocking] data_entry.sex_valid" in shown.stdout


@pytest.mark.parametrize("name", ["BBox_List_2017.csv", "Data_Entry_2017.csv", "test_list.txt"])
def test_a_metadata_file_over_its_limit_is_refused_before_it_is_read(aws_env: None, tmp_path: Path, name: str) -> None:
    source = tmp_path / "mirror"
    synthesize(SynthConfig(dest=source, images=12, image_size=64, seed=3))
    with (source / name).open("r+b") as fh:  # a sparse 2 GB file: reading it would show in the peak RSS
        fh.truncate(2 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FileTooLargeError, match=rf"{name}: 2,147,483,648 bytes, over the \d+ MiB limit"):
        _run(source, f"huge-{name}")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing was read
    store = Store(tasks.config_from_params({"source": str(source), "store": f"s3://{BUCKET}/huge-{name}"}, "x").store)
    assert not list(store.list(""))  # refused at discovery: no archive extracted, nothing claimed or published
