"""Annotation layers through every stage: a release carries each layer as its own table and as a struct column of
every row (metadata, Parquet, WebDataset), exactly as the layer files say; uncovered images are null; a layer row
of an image that is not in the release is quarantined with its reason; a second release reports what changed.

Every layer file is written here, in each format: a label version (Data_Entry, explicit size columns), Google's
four-finding expert labels as two files (``test_labels.csv`` + ``validation_labels.csv``, set from the file name),
a box list and a generic layer with its JSON spec.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import nih
from pipeline.dev.stack import StackInfo
from pipeline.publish import diff
from pipeline.read.client import ReleaseClient
from pipeline.store.storage import Store
from tests.integration import releases
from tests.integration.read.test_consumers import run_recipe

pytestmark = pytest.mark.integration
BUCKET = "annotation-layers"
EXPERT_COLUMNS = ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass")
NOT_IN_DATA_ENTRY = "99999999_000.png"


def _entry(source: Path) -> pd.DataFrame:
    return pd.read_csv(source / "Data_Entry_2017.csv", dtype=str, keep_default_na=False)


def _relabelled(entry: pd.DataFrame) -> dict[str, list[str]]:
    """The label version's labels: the primary's, with every 7th image relabelled (Hernia added or No Finding)."""
    labels: dict[str, list[str]] = {}
    for i, (name, cell) in enumerate(zip(entry["Image Index"], entry["Finding Labels"], strict=True)):
        found = [nih.NO_FINDING if x == "No_Finding" else x for x in cell.split("|")]
        if i % 7 == 0:
            found = ["Hernia"] if nih.NO_FINDING in found else [*found, "Hernia"]
        labels[name] = found
    return labels


def _write_label_version(path: Path, entry: pd.DataFrame, labels: dict[str, list[str]]) -> None:
    header = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    header += "OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y\n"
    rows = [
        f"{r['Image Index']},{'|'.join(labels[r['Image Index']])},{r['Follow-up #']},{r['Patient ID']},"
        f"{r['Patient Age']},{r['Patient Gender']},{r['View Position']},1024,1024,0.143,0.143\n"
        for r in entry.to_dict("records")
    ]
    path.write_text(header + "".join(rows))


def _expert_cells(i: int) -> list[str]:
    """Each finding YES, NO or not read (empty), varied by row."""
    return [("YES", "NO", "", "no")[(i + k) % 4] for k in range(4)]


def _write_expert(folder: Path, names: list[str], patients: dict[str, str], flip: str | None = None) -> dict[str, Any]:
    """Google's two files (test, validation); returns what each image's struct must hold."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, Any] = {}
    header = "Image Index,Patient ID," + ",".join(EXPERT_COLUMNS) + "\n"
    halves = {
        "test_labels.csv": ("test", names[: len(names) // 2]),
        "validation_labels.csv": ("val", names[len(names) // 2 :]),
    }
    for file_name, (set_id, part) in halves.items():
        rows = []
        for name in part:
            i = int(name[:8]) * 1000 + int(name[9:12])  # the same cells for an image in every version of the file
            cells = _expert_cells(i)
            if name == flip:
                cells[1] = "NO" if cells[1].upper() == "YES" else "YES"
            rows.append(f"{name},{patients.get(name, '99999999')},{','.join(cells)}\n")
            values = [None if c == "" else c.upper() == "YES" for c in cells]
            keys = ("fracture", "pneumothorax", "airspace_opacity", "nodule_or_mass")
            expected[name] = {**dict(zip(keys, values, strict=True)), "set_id": set_id}
        if file_name == "test_labels.csv":
            rows.append(f"{NOT_IN_DATA_ENTRY},99999999,YES,NO,NO,NO\n")
        (folder / file_name).write_text(header + "".join(rows))
    return expected


def _layer_args(source: Path, google: Path) -> tuple[str, ...]:
    return (
        "v2020=relabel_v2020.csv",
        f"google={google / 'test_labels.csv'}",
        f"google={google / 'validation_labels.csv'}",
        "boxes2=extra_boxes.csv",
        "quality=quality.csv",
    )


def _write_boxes_and_quality(source: Path, names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    boxes = {names[1]: [("Nodule", 10.0, 20.0, 30.0, 40.0), ("Mass", 1.5, 2.5, 3.5, 4.5)],
             names[4]: [("Pneumonia", 100.0, 100.0, 50.0, 60.0)]}  # fmt: skip
    lines = [f"{n},{b[0]},{b[1]},{b[2]},{b[3]},{b[4]}\n" for n, items in boxes.items() for b in items]
    (source / "extra_boxes.csv").write_text("Image Index,Finding Label,x,y,w,h\n" + "".join(lines))
    quality = {names[0]: ("Y", "good"), names[2]: ("N", "poor"), names[3]: ("", "good")}
    rows = [f"{n},{r},{g}\n" for n, (r, g) in quality.items()]
    (source / "quality.csv").write_text("file,readable,grade\n" + "".join(rows))
    spec = {
        "id_column": "file",
        "labels": {
            "readable": {"type": "boolean", "true": ["Y"], "false": ["N"]},
            "grade": {"type": "string", "values": ["good", "poor"]},
        },
        "description": "image quality, read by the team",
        "licence": "CC0-1.0",
    }
    (source / "quality.csv.layer.json").write_text(json.dumps(spec))
    box_values = {n: {"bboxes": [dict(zip(("label", "x", "y", "w", "h"), b, strict=True)) for b in items]}
                  for n, items in boxes.items()}  # fmt: skip
    quality_values = {n: {"readable": {"Y": True, "N": False}.get(r), "grade": g} for n, (r, g) in quality.items()}
    return box_values, quality_values


@pytest.fixture(scope="module")
def layered(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Release ``v1`` of a 60-image source with four layers, in a bucket of this module."""
    root = tmp_path_factory.mktemp("layers")
    source = releases.make_source(root / "source")
    entry = _entry(source)
    names = entry["Image Index"].tolist()
    patients = dict(zip(entry["Image Index"], entry["Patient ID"], strict=True))
    labels = _relabelled(entry)
    _write_label_version(source / "relabel_v2020.csv", entry, labels)
    expert = _write_expert(root / "google", names[5:35], patients)
    boxes, quality = _write_boxes_and_quality(source, names)
    store = releases.new_store(s3_stack, BUCKET)
    summary = releases.publish(
        store, source, "layers-1", release="v1", annotations=_layer_args(source, root / "google")
    )
    meta = pq.read_table(io.BytesIO(store.get_bytes("releases/v1/metadata.parquet"))).to_pylist()
    manifest = json.loads(store.get_bytes("releases/v1/manifest.json"))
    expected = {
        "v2020": {n: labels[n] for n in names},
        "google": expert,
        "boxes2": boxes,
        "quality": quality,
    }
    return {"store": store, "source": source, "root": root, "summary": summary, "meta": meta,
            "manifest": manifest, "expected": expected, "names": names, "patients": patients}  # fmt: skip


def test_every_covered_value_equals_the_file_and_uncovered_images_are_null(layered: dict[str, Any]) -> None:
    assert layered["summary"]["published"] is True
    rows, expected = layered["meta"], layered["expected"]
    assert rows, "nothing published"
    for row in rows:
        name = row["image_index"]
        wanted = expected["v2020"][name]
        assert row["v2020"]["labels"] == wanted, name
        for label in nih.FINDINGS:
            assert row["v2020"][nih.finding_column(label)] is (label in wanted), (name, label)
        assert row["v2020"]["no_finding"] is (nih.NO_FINDING in wanted)
        for layer in ("google", "boxes2", "quality"):
            assert row[layer] == expected[layer].get(name), (layer, name)
    covered = {layer: sum(r[layer] is not None for r in rows) for layer in expected}
    assert covered["google"] == len({r["image_index"] for r in rows} & set(expected["google"])) > 10
    assert covered["boxes2"] == 2
    assert covered["quality"] == 3


def test_parquet_rows_and_webdataset_json_carry_the_layers(layered: dict[str, Any]) -> None:
    store: Store = layered["store"]
    by_name = {r["image_index"]: r for r in layered["meta"]}
    parts = [f for f in layered["manifest"]["files"] if f["path"].startswith("parquet/")]
    seen = 0
    for part in parts:
        table = pq.read_table(
            io.BytesIO(store.get_bytes(f"releases/v1/{part['path']}")),
            columns=["image_index", "google", "v2020", "boxes2", "quality"],
        )
        for row in table.to_pylist():
            for layer in ("google", "v2020", "boxes2", "quality"):
                assert row[layer] == by_name[row["image_index"]][layer]
            seen += 1
    assert seen == len(by_name)
    tar_path = next(f["path"] for f in layered["manifest"]["files"] if f["kind"] == "wds")
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(f"releases/v1/{tar_path}"))) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".json")]
        assert members
        for member in members:
            record = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
            for layer in ("google", "v2020", "boxes2", "quality"):
                assert record[layer] == by_name[record["image_index"]][layer]


def test_each_layer_has_its_table_and_manifest_entry_with_provenance(layered: dict[str, Any]) -> None:
    store: Store = layered["store"]
    entries = {e["id"]: e for e in layered["manifest"]["annotations"]}
    assert list(entries) == ["v2020", "google", "boxes2", "quality"]
    assert {e["kind"] for e in entries.values()} == {"label_version", "expert_labels", "boxes", "generic"}
    google_files = {f["name"]: f for f in entries["google"]["files"]}
    for name, folder in (
        ("test_labels.csv", layered["root"] / "google"),
        ("validation_labels.csv", layered["root"] / "google"),
    ):
        assert google_files[name]["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert entries["quality"]["spec"]["name"] == "quality.csv.layer.json"
    assert entries["quality"]["licence"] == "CC0-1.0"
    published = {r["image_index"] for r in layered["meta"]}
    for layer_id, entry in entries.items():
        table = pq.read_table(io.BytesIO(store.get_bytes(f"releases/v1/{entry['table']}")))
        assert table.num_rows == entry["rows"]
        names = set(table.column("image_index").to_pylist())
        assert names <= published
        assert len(names) == entry["images_covered"]
        assert entry["images_covered"] == sum(r[layer_id] is not None for r in layered["meta"])
    assert layered["manifest"]["schema"]["google"].startswith("struct<fracture: bool")


def test_a_layer_row_of_an_image_not_in_data_entry_is_quarantined_with_its_reason(layered: dict[str, Any]) -> None:
    store: Store = layered["store"]
    quarantine = pq.read_table(io.BytesIO(store.get_bytes("releases/v1/quarantine.parquet"))).to_pandas()
    row = quarantine[quarantine["image_index"] == NOT_IN_DATA_ENTRY]
    assert row["reason_code"].tolist() == ["layer_row_without_row"]
    assert "layer google" in row["reason"].iloc[0]
    assert row["source"].iloc[0] == "test_labels.csv"
    assert layered["manifest"]["quarantine_reasons"]["layer_row_without_row"] == 1
    assert layered["summary"]["quarantined_by_kind"]["layer_rows"] >= 1


def test_the_card_compares_each_layer_and_counts_the_relabels(layered: dict[str, Any]) -> None:
    store: Store = layered["store"]
    card = store.get_bytes("releases/v1/README.md").decode()
    published = {r["image_index"]: r for r in layered["meta"]}
    differs = [n for n, r in published.items() if sorted(r["labels"]) != sorted(layered["expected"]["v2020"][n])]
    assert differs
    assert "Annotation layers" in card
    comparison = next(e for e in layered["manifest"]["annotations"] if e["id"] == "v2020")["comparison"]
    assert json.dumps(comparison).count(str(len(differs))) >= 1
    assert f"Images whose label set differs from the primary labels: **{len(differs)}**" in card
    assert comparison["relabelled"] == len(differs)


def test_a_second_release_reports_what_changed_in_a_layer(layered: dict[str, Any]) -> None:
    store: Store = layered["store"]
    root, source, names = layered["root"], layered["source"], layered["names"]
    before = layered["expected"]["google"]
    # names[5] leaves the layer, names[35] joins it, names[10]'s pneumothorax flips, names[20] moves to the test file
    after = _write_expert(root / "google2", names[6:36], layered["patients"], flip=names[10])
    summary = releases.publish(
        store, source, "layers-2", release="v2", annotations=_layer_args(source, root / "google2")
    )
    assert summary["published"] is True
    published = {r["image_index"] for r in layered["meta"]}
    changed = sorted(n for n in published & before.keys() & after.keys() if before[n] != after[n])
    assert changed == sorted([names[10], names[20]])
    changes = diff.diff_releases(store, "v1", "v2")
    google = changes.to_json()["layers"]["google"]
    counts = (google["counts"]["added"], google["counts"]["removed"], google["counts"]["changed"])
    assert counts == (len(published & after.keys() - before.keys()), len(published & before.keys() - after.keys()),
                      len(changed))  # fmt: skip
    assert counts[0] == counts[1] == 1
    text = diff.render_text(changes)
    assert "google" in text
    assert names[10] in text
    assert changes.to_json()["layers"]["v2020"]["counts"]["changed"] == 0


def test_cxr_run_refuses_an_unknown_layer_header_and_a_bad_layer_id(
    layered: dict[str, Any], s3_stack: StackInfo, tmp_path: Path
) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("image,score,comment\n00000001_000.png,3,fine\n")
    store = f"s3://{BUCKET}/cli"
    result = releases.cxr(
        ["run", "--source", str(layered["source"]), "--store", store, "--annotations", f"odd={odd}"], s3_stack.env()
    )
    assert result.returncode == 1, result.stderr
    assert "unknown annotation layer header" in result.stderr
    assert "'score'" in result.stderr
    assert ".layer.json" in result.stderr
    assert "Traceback" not in result.stderr
    bad = releases.cxr(
        ["run", "--source", str(layered["source"]), "--store", store, "--annotations", "Google=x.csv"], s3_stack.env()
    )
    assert bad.returncode == 2
    assert "annotation layer id 'Google'" in bad.stderr
    taken = releases.cxr(
        ["run", "--source", str(layered["source"]), "--store", store, "--annotations", "labels=x.csv"], s3_stack.env()
    )
    assert taken.returncode == 2
    assert "already name" in taken.stderr


def _google_test_rows(s3_stack: StackInfo) -> list[dict[str, Any]]:
    """The latest release's test rows that Google's layer read for pneumothorax, as the consumer sees them."""
    client = ReleaseClient(
        f"s3://{BUCKET}/cxr",
        endpoint_url=s3_stack.endpoint_url,
        access_key_id=s3_stack.consumer_access_key_id,
        secret_access_key=s3_stack.consumer_secret_access_key,
    )
    rows = client.open("latest").metadata().to_pylist()
    return [r for r in rows if r["google"] is not None and r["google"]["pneumothorax"] is not None]


def test_the_readme_layer_recipes_train_on_nih_and_evaluate_on_the_layer(
    layered: dict[str, Any], s3_stack: StackInfo, tmp_path: Path
) -> None:
    uri = f"s3://{BUCKET}/cxr"
    read = _google_test_rows(s3_stack)
    test = [r for r in read if r["split"] == "test"]
    assert test, "the fixture's layer must read some test images"
    agree = sum(r["pneumothorax"] == r["google"]["pneumothorax"] for r in test)
    out = run_recipe("layers-pandas", s3_stack, tmp_path, uri).stdout
    assert "layers: ['v2020', 'google', 'boxes2', 'quality']" in out
    assert f"read for pneumothorax; NIH agrees on {agree}" in out
    groups: dict[tuple[str, str], list[int]] = {}
    for r in read:
        group = groups.setdefault((r["split"], r["google"]["set_id"]), [0, 0])
        group[0] += 1
        group[1] += int(r["pneumothorax"] == r["google"]["pneumothorax"])
    expected = [(split, set_id, n, ok) for (split, set_id), (n, ok) in sorted(groups.items())]
    assert run_recipe("layers-duckdb", s3_stack, tmp_path, uri).stdout.strip() == str(expected)
    nih_positive = sum(r["pneumothorax"] for r in test)
    layer_positive = sum(r["google"]["pneumothorax"] for r in test)
    out = run_recipe("layers-torch", s3_stack, tmp_path, uri).stdout
    assert f"{len(test)} test images; {nih_positive} NIH-positive; {layer_positive} layer-positive" in out


def test_croissant_describes_each_layer_and_mlcroissant_reads_it(layered: dict[str, Any], tmp_path: Path) -> None:
    import mlcroissant as mlc

    store: Store = layered["store"]
    for entry in layered["manifest"]["files"]:
        if entry["path"] in ("croissant.json", "metadata.parquet") or entry["path"].startswith("annotations/"):
            target = tmp_path / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get_bytes(f"releases/v1/{entry['path']}"))
    dataset = mlc.Dataset(jsonld=str(tmp_path / "croissant.json"))
    records = list(dataset.records("annotations_google"))
    expected = layered["expected"]["google"]
    published = {r["image_index"] for r in layered["meta"]}
    assert len(records) == len(published & expected.keys())
    for record in records:
        name = record["annotations_google/image_index"].decode()
        value = record["annotations_google/pneumothorax"]
        assert (None if value is None or value != value else bool(value)) == expected[name]["pneumothorax"]
    boxes = list(dataset.records("annotations_boxes2"))
    assert len(boxes) == 3
