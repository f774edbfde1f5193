"""The dataset card, the Croissant file and the diff of two real releases, read as a person (or mlcroissant) would.

Release 2026.11.25 is built from half of the source's archives; release 2026.11.26 from all of them, with one
image relabelled in Data_Entry_2017.csv and two bad members added to the last archive. Both take their version
from the run's logical date.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.dev.stack import StackInfo
from pipeline.publish.listing import list_versions, resolve_version
from pipeline.publish.manifest import read_manifest
from pipeline.store.storage import Store
from tests.integration import releases

pytestmark = pytest.mark.integration
OLD, NEW = "2026.11.25", "2026.11.26"
URI = "s3://card-test/cxr"


def _add_bad_members(source: Path) -> None:
    """A member that is not an image name and a truncated PNG: both must end up in quarantine."""
    with zipfile.ZipFile(source / "images_012.zip", "a") as archive:
        archive.writestr("images/notes.txt", "not an image")
        archive.writestr("images/00099999_000.png", b"\x89PNG\r\n\x1a\n truncated")


def _relabel_one(source: Path) -> tuple[str, str]:
    """Give the first image of the Data_Entry file the single label Hernia; return (image, old labels)."""
    path = source / "Data_Entry_2017.csv"
    lines = path.read_text().split("\n")
    image, old, rest = lines[1].split(",", 2)
    lines[1] = ",".join([image, "Hernia", rest])
    path.write_text("\n".join(lines))
    return image, old


@pytest.fixture(scope="module")
def two_releases(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("card")
    first = releases.make_source(root / "first", images=72, seed=11)
    second = root / "second"
    shutil.copytree(first, second)
    image, old_labels = _relabel_one(second)
    _add_bad_members(second)
    store = releases.new_store(s3_stack, "card-test")
    half = tuple(str(n) for n in range(1, 7))
    releases.publish(store, first, "card-old", logical_date="2026-11-25T02:00:00+00:00", shards=half)
    summary = releases.publish(store, second, "card-new", logical_date="2026-11-26T02:00:00+00:00")
    return {"store": store, "summary": summary, "relabelled": (image, old_labels)}


def _text(store: Store, version: str, path: str) -> str:
    return store.get_bytes(f"releases/{version}/{path}").decode()


def _manifest(store: Store, version: str) -> dict[str, Any]:
    manifest = read_manifest(store, version)
    assert manifest is not None
    return manifest


def _metadata(store: Store, version: str) -> Any:
    return pq.read_table(io.BytesIO(store.get_bytes(f"releases/{version}/metadata.parquet"))).to_pandas()


def test_versions_come_from_the_logical_date_and_latest_is_the_newest(two_releases: dict[str, Any]) -> None:
    store: Store = two_releases["store"]
    assert two_releases["summary"]["version"] == NEW
    assert list_versions(store).published == [OLD, NEW]
    assert resolve_version(store, "latest") == NEW
    assert _manifest(store, NEW)["parent"] == OLD


def test_card_states_images_and_patients_per_split(two_releases: dict[str, Any]) -> None:
    store: Store = two_releases["store"]
    card, manifest, meta = _text(store, NEW, "README.md"), _manifest(store, NEW), _metadata(store, NEW)
    assert card.startswith(f"# NIH ChestX-ray14 — release {NEW}\n")
    assert f"Parent release: {OLD}." in card
    for split in ("train", "val", "test"):
        images = manifest["counts"][split]
        patients = meta.loc[meta["split"] == split, "patient_id"].nunique()
        assert f"| {split} | {images} | {patients} |" in card
    assert f"| **all** | {len(meta)} | {meta['patient_id'].nunique()} | 100% |" in card


def test_card_shows_label_prevalence_age_sex_and_view(two_releases: dict[str, Any]) -> None:
    store: Store = two_releases["store"]
    card, meta = _text(store, NEW, "README.md"), _metadata(store, NEW)
    train = meta[meta["split"] == "train"]
    effusions = int(train["effusion"].sum())
    assert f"| `effusion` | Effusion | {100 * effusions / len(train):.1f}% ({effusions}) |" in card
    assert "| `pleural_thickening` | Pleural_Thickening |" in card
    assert "| split | mean age | median | min | max | age missing |" in card
    assert f"| {int((train['sex'] == 'F').sum())} | {int((train['sex'] == 'M').sum())} |" in card
    assert "| view | AP | PA |" in card


def test_card_counts_the_quirks_it_handled(two_releases: dict[str, Any]) -> None:
    store: Store = two_releases["store"]
    card, meta, manifest = _text(store, NEW, "README.md"), _metadata(store, NEW), _manifest(store, NEW)
    converted, flagged = int(meta["converted"].sum()), int(meta["age_years"].isna().sum())
    assert converted > 0
    assert flagged > 0
    assert f"| images converted to 8-bit grayscale | {converted} |" in card
    assert f"| ages flagged | {flagged} |" in card
    assert manifest["quarantined"] >= 2
    assert f"| items quarantined | {manifest['quarantined']} |" in card
    assert "| archive member skipped: name is not NNNNNNNN_NNN.png | 1 |" in card
    assert "| image rejected at extraction | 1 |" in card
    assert "ages given in months (`011M`), converted to years" in card
    assert manifest["quirks"]["converted_images"] == converted


def test_card_states_limitations_citation_and_licence(two_releases: dict[str, Any]) -> None:
    card = _text(two_releases["store"], NEW, "README.md")
    assert "Labels are mined from radiology reports by NLP" in card
    assert "about 90% accurate" in card
    assert "Wang, Xiaosong" in card
    assert "CVPR" in card
    assert "public domain" in card


def test_card_shows_the_diff_against_its_parent(two_releases: dict[str, Any]) -> None:
    store: Store = two_releases["store"]
    card, manifest = _text(store, NEW, "README.md"), _manifest(store, NEW)
    old_images = sum(_manifest(store, OLD)["counts"].values())
    added = sum(manifest["counts"].values()) - old_images
    assert added > 0
    assert manifest["diff_from_parent"] == {
        "added": added,
        "removed": 0,
        "relabelled": 1,
        "moved": 0,
        "unchanged": old_images - 1,
    }
    assert f"## Changes since the parent release ({OLD})" in card
    assert f"| added | {added} |" in card
    assert "| relabelled | 1 |" in card
    assert "| moved | 0 |" in card


def test_card_plots_are_real_pngs_referenced_by_the_card(two_releases: dict[str, Any]) -> None:
    store: Store = two_releases["store"]
    card = _text(store, NEW, "README.md")
    listed = {f["path"] for f in _manifest(store, NEW)["files"]}
    for plot in ("card/label_prevalence.png", "card/age_histogram.png", "card/sex_and_view.png"):
        assert f"]({plot})" in card
        assert plot in listed
        image = Image.open(io.BytesIO(store.get_bytes(f"releases/{NEW}/{plot}")))
        assert image.format == "PNG"
        assert image.width >= 800
        assert len(image.getcolors(1 << 16) or []) > 4  # bars, text and gridlines: not a blank canvas


def _size(n: int) -> str:
    power = next((p for p in (3, 2, 1) if n >= 1024**p), 0)
    return f"{n:,} B" if power == 0 else f"{n / 1024**power:.1f} {'KMG'[power - 1]}iB"


def test_card_names_the_small_copy_with_its_size_per_split(two_releases: dict[str, Any]) -> None:
    store: Store = two_releases["store"]
    card, manifest = _text(store, NEW, "README.md"), _manifest(store, NEW)
    assert "a small copy downsized to 256 px on its long side (`image_small`, `<id>.small.png`)" in card
    for split, sizes in manifest["image_bytes"].items():
        images = manifest["counts"][split]
        assert f"| {split} | {images} | {_size(sizes['full'])} | {_size(sizes['small'])} |" in card


def test_croissant_file_validates_and_reads_with_mlcroissant(two_releases: dict[str, Any], tmp_path: Path) -> None:
    import mlcroissant as mlc

    store: Store = two_releases["store"]
    manifest = _manifest(store, NEW)
    for entry in manifest["files"]:
        if entry["path"] in ("croissant.json", "metadata.parquet") or entry["path"].startswith("parquet/"):
            target = tmp_path / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get_bytes(f"releases/{NEW}/{entry['path']}"))
    doc = json.loads((tmp_path / "croissant.json").read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    meta_sha = next(f["sha256"] for f in manifest["files"] if f["path"] == "metadata.parquet")
    assert next(d["sha256"] for d in doc["distribution"] if d["@id"] == "metadata.parquet") == meta_sha
    assert doc["version"] == NEW, "the version as published, not 2026.11.26 rewritten as semver"
    dataset = mlc.Dataset(jsonld=str(tmp_path / "croissant.json"))
    assert not dataset.metadata.ctx.issues.errors
    records = {r["metadata/image_id"].decode(): r for r in dataset.records("metadata")}
    assert len(records) == manifest["images"]
    meta = _metadata(store, NEW).set_index("image_id")
    for image_id, row in meta.iterrows():
        record = records[str(image_id)]
        assert [label.decode() for label in record["metadata/labels"]] == list(row["labels"])
        boxes = [(b["metadata/bboxes/label"].decode(), b["metadata/bboxes/x"]) for b in record["metadata/bboxes"]]
        assert boxes == [(b["label"], b["x"]) for b in row["bboxes"]]
        assert record["metadata/pixel_spacing_x"] == row["pixel_spacing_x"]
        assert record["metadata/patient_order"] == row["patient_order"]
    assert any(r["metadata/bboxes"] for r in records.values()), "the source has boxes"
    first = next(iter(dataset.records("images")))
    assert first["images/image"].size == (64, 64)
    assert first["images/image_small"].size == (64, 64), "an image smaller than 256 px is only re-encoded"


def test_cxr_releases_diff_lists_the_relabelled_image(two_releases: dict[str, Any], s3_stack: StackInfo) -> None:
    image, old_labels = two_releases["relabelled"]
    env = s3_stack.consumer_env()
    text = releases.cxr(["releases", "diff", OLD, "latest", "--store", URI], env)
    assert text.returncode == 0, text.stderr
    assert f"release {OLD} -> {NEW}" in text.stdout
    assert f"{image}: {old_labels} -> Hernia" in text.stdout
    assert "WARNING" not in text.stdout
    as_json = releases.cxr(["releases", "diff", OLD, NEW, "--store", URI, "--json"], env)
    data = json.loads(as_json.stdout)
    assert data["counts"]["moved"] == 0
    assert data["relabelled"] == [{"image_index": image, "before": old_labels, "after": "Hernia"}]
    assert len(data["added"]) == data["counts"]["added"] > 0


def test_cxr_releases_show_summarises_a_release(two_releases: dict[str, Any], s3_stack: StackInfo) -> None:
    shown = releases.cxr(["releases", "show", "latest", "--store", URI], s3_stack.consumer_env())
    assert shown.returncode == 0, shown.stderr
    assert f"release {NEW}  (latest)" in shown.stdout
    assert f"parent      {OLD}" in shown.stdout
    assert "relabelled 1" in shown.stdout
