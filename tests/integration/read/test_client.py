"""The reader against a real store and a real release, with the consumer's read-only keys: selections, filters, the
small copy, random access by id (and what it reads), the wiring of the PyTorch dataset and downloads, and the
light import (no Airflow, no Great Expectations, no pipeline stage)."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.dev.stack import StackInfo
from pipeline.errors import UsageError
from pipeline.publish.manifest import read_manifest
from pipeline.read.client import Release, ReleaseClient, Selection
from tests.integration import releases
from tests.unit.read.test_access import CountingFS

pytestmark = pytest.mark.integration
URI = "s3://reader/cxr"
VERSION = "2026.11.26"
ROOT = Path(__file__).resolve().parents[3]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def published(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One release of 60 images in Parquet parts of several small row groups (so a lookup has something to skip)."""
    source = releases.make_source(tmp_path_factory.mktemp("reader") / "source", images=60, seed=21)
    store = releases.new_store(s3_stack, "reader")
    releases.publish(
        store, source, "reader", logical_date="2026-11-26T02:00:00+00:00", row_group_bytes=20_000,
        parquet_file_bytes=60_000,
    )  # fmt: skip
    meta = pq.read_table(io.BytesIO(store.get_bytes(f"releases/{VERSION}/metadata.parquet"))).to_pandas()
    manifest = read_manifest(store, VERSION)
    assert manifest is not None
    return {"store": store, "meta": meta, "manifest": manifest}


def _client(stack: StackInfo) -> ReleaseClient:
    return ReleaseClient(
        URI,
        endpoint_url=stack.endpoint_url,
        access_key_id=stack.consumer_access_key_id,
        secret_access_key=stack.consumer_secret_access_key,
    )


@pytest.fixture
def release(published: dict[str, Any], s3_stack: StackInfo) -> Release:
    return _client(s3_stack).open()


def _ids(frame: pd.DataFrame) -> list[str]:
    return [str(i) for i in frame["image_id"]]


def _first_per_patient(frame: pd.DataFrame) -> pd.DataFrame:
    order = [c for c in ("patient_order", "follow_up", "image_index") if c in frame.columns]
    firsts = frame.sort_values(["patient_id", *order]).groupby("patient_id").head(1)
    return frame.loc[sorted(firsts.index)]


@pytest.mark.parametrize("split", [*SPLITS, None])
def test_pa_only_selection_matches_the_metadata(published: dict[str, Any], release: Release, split: str | None) -> None:
    meta = published["meta"]
    expected = meta[(meta["view_position"] == "PA") & ((meta["split"] == split) if split else True)]
    chosen = release.select(split, views=["PA"])
    assert len(chosen) == len(expected) > 0
    assert list(chosen.image_ids or ()) == _ids(expected)
    assert release.dataset(chosen).count_rows() == len(expected)
    assert _ids(release.to_pandas(chosen)) == _ids(expected)


def test_findings_selection_is_any_of_in_either_spelling(published: dict[str, Any], release: Release) -> None:
    meta = published["meta"]
    expected = meta[meta["effusion"] | meta["pleural_thickening"]]
    assert len(expected) > 0
    for findings in (["effusion", "pleural_thickening"], ["Effusion", "Pleural_Thickening"]):
        assert list(release.select(findings=findings).image_ids or ()) == _ids(expected)
    assert len(release.select("train", findings=["No Finding"])) == int(
        (meta["no_finding"] & (meta["split"] == "train")).sum()
    )


def test_first_image_per_patient_is_chosen_among_the_selected_rows(published: dict[str, Any], release: Release) -> None:
    meta = published["meta"]
    train_pa = meta[(meta["split"] == "train") & (meta["view_position"] == "PA")]
    expected = _first_per_patient(train_pa)
    chosen = release.select("train", views=["PA"], unique_patients="first")
    assert list(chosen.image_ids or ()) == _ids(expected)
    assert len(chosen) == train_pa["patient_id"].nunique()
    assert (expected["follow_up"] > 0).any(), "some patient's first PA image is not its first image"
    all_first = release.select(unique_patients="first")
    assert len(all_first) == meta["patient_id"].nunique()


def test_where_takes_a_pyarrow_expression(published: dict[str, Any], release: Release) -> None:
    meta = published["meta"]
    expected = meta[(meta["split"] == "test") & (meta["age_years"] >= 40) & (meta["sex"] == "F")]
    chosen = release.select("test", where=(pc.field("age_years") >= 40) & (pc.field("sex") == "F"))
    assert list(chosen.image_ids or ()) == _ids(expected)
    with pytest.raises(UsageError, match=r"cannot filter the release's metadata .* its columns: image_id"):
        release.select(where=pc.field("agee") > 3)


def test_to_pandas_takes_a_filter_expression(published: dict[str, Any], release: Release) -> None:
    meta = published["meta"]
    expected = meta[(meta["split"] == "train") & meta["effusion"]]
    rows = release.to_pandas("train", filter=pc.field("effusion"))
    assert len(expected) > 0
    assert _ids(rows) == _ids(expected)
    pixels = release.to_pandas("train", columns=["image_id", "image"], filter=pc.field("effusion"))
    assert sorted(_ids(pixels)) == sorted(_ids(expected))
    assert list(pixels.columns) == ["image_id", "image"]
    assert all(png.startswith(b"\x89PNG") for png in pixels["image"])
    with pytest.raises(UsageError, match=r"filter= takes a pyarrow compute expression"):
        release.to_pandas("train", filter="effusion == True")  # type: ignore[arg-type]


def test_image_small_reads_the_small_copy_of_a_selection(published: dict[str, Any], release: Release) -> None:
    chosen = release.select("train", views=["PA"], findings=["no_finding"])
    frame = release.to_pandas(chosen, image="small")
    assert sorted(_ids(frame)) == sorted(chosen.image_ids or ())
    assert "image_small" in frame.columns
    assert "image" not in frame.columns
    table = release.dataset(chosen.split).to_table(columns=["image_id", "image_small"])
    by_id = dict(zip(table.column("image_id").to_pylist(), table.column("image_small").to_pylist(), strict=True))
    assert all(row.image_small == by_id[row.image_id] for row in frame.itertuples())
    narrow = release.to_pandas(chosen, columns=["image_id"], image="full")
    assert list(narrow.columns) == ["image_id", "image"]
    with pytest.raises(UsageError, match=r"image='thumb': use 'full' .* or 'small'"):
        release.to_pandas(chosen, image="thumb")


def test_webdataset_keys_of_a_selection_filter_the_split_shards(release: Release) -> None:
    import webdataset as wds

    chosen = release.select("train", views=["AP"])
    keys = chosen.keys()
    assert keys is not None
    stream = wds.WebDataset(release.shard_urls(chosen), shardshuffle=False, empty_check=False)
    got = [s["__key__"] for s in stream.select(lambda s: s["__key__"] in keys)]
    assert sorted(got) == sorted(keys)


def _with_row_groups(release: Release) -> Release:
    """The release, with each Parquet entry's ``row_groups`` taken from the files' footers when the manifest lacks
    them (what the publisher records; releases published before it did have none)."""
    files = [
        _listed(release, entry) if entry["path"].startswith("parquet/") and "row_groups" not in entry else entry
        for entry in release.manifest["files"]
    ]
    return Release(release.client, release.version, {**release.manifest, "files": files})


def _listed(release: Release, entry: dict[str, Any]) -> dict[str, Any]:
    path = release.client.store.uri(release.key(entry["path"])).removeprefix("s3://")
    with release.filesystem().open_input_file(path) as fh:
        parquet = pq.ParquetFile(fh)
        ids = [
            parquet.read_row_group(i, columns=["image_id"]).column(0).to_pylist() for i in range(parquet.num_row_groups)
        ]
    return {**entry, "row_groups": [{"rows": len(g), "first": g[0], "last": g[-1]} for g in ids]}


def _counting(release: Release) -> tuple[Release, CountingFS]:
    counting = CountingFS(release.client.filesystem())
    release.cache["filesystem"] = counting.filesystem()
    release.metadata()  # read once per release: not part of a lookup
    counting.reset()
    return release, counting


def test_get_returns_the_parquet_row_with_both_images(published: dict[str, Any], release: Release) -> None:
    meta = published["meta"]
    picks = [str(meta["image_id"].iloc[i]) for i in (0, 7, len(meta) // 2, len(meta) - 1)]
    full = release.dataset().to_table(filter=pc.field("image_id").isin(picks)).to_pylist()
    expected = {row["image_id"]: row for row in full}
    stripped = [{k: v for k, v in e.items() if k != "row_groups"} for e in release.manifest["files"]]
    older = Release(release.client, release.version, {**release.manifest, "files": stripped})  # a scan with a filter
    for candidate in (release, _with_row_groups(release), older):
        for image_id in picks:
            row = candidate.get(image_id)
            assert row["image"] == expected[image_id]["image"]
            assert row["image_small"] == expected[image_id]["image_small"]
            assert row["split"] == expected[image_id]["split"]
            assert row["labels"] == expected[image_id]["labels"]


def test_get_reads_one_file_and_a_fraction_of_a_scan(published: dict[str, Any], release: Release) -> None:
    indexed, counting = _counting(_with_row_groups(release))
    image_id = str(published["meta"].query("split == 'train'")["image_id"].iloc[-2])
    parts = indexed.files("parquet", "train")
    assert len(parts) >= 2, "the fixture's parts are too coarse"
    assert sum(len(e["row_groups"]) for e in parts) >= 6, "the fixture's row groups are too coarse"
    row = indexed.get(image_id)
    holding = [e["path"] for e in parts if any(g["first"] <= image_id <= g["last"] for g in e["row_groups"])]
    assert [p.rsplit("/", 1)[1] for p in counting.opened] == [holding[0].rsplit("/", 1)[1]]
    lookup = counting.bytes_read
    counting.reset()
    scanned = indexed.to_pandas("train", columns=["image_id", "image", "image_small"])
    assert scanned.set_index("image_id").loc[image_id, "image"] == row["image"]
    assert {p.rsplit("/", 1)[1] for p in counting.opened} == {e["path"].rsplit("/", 1)[1] for e in parts}
    assert lookup * 3 < counting.bytes_read, (lookup, counting.bytes_read)


def test_get_of_an_unknown_image_names_it_and_the_release(release: Release) -> None:
    with pytest.raises(UsageError, match=rf"release {VERSION} has no image '00009999_000'"):
        release.get("00009999_000")


def test_torch_dataset_and_download_take_a_selection(
    published: dict[str, Any], release: Release, tmp_path: Path
) -> None:
    chosen = release.select("train", views=["PA"], unique_patients="first")
    data = release.torch_dataset(chosen, image="small")
    assert len(data) == len(chosen)
    assert data[0]["image_id"] in (chosen.keys() or ())
    with pytest.raises(UsageError, match=r"image='thumb'"):
        release.torch_dataset(chosen, image="thumb")
    paths = release.download(tmp_path, "val")  # the old form: the Parquet parts of one split
    assert [p.name for p in paths] == [e["path"].rsplit("/", 1)[1] for e in release.files("parquet", "val")]
    assert [p.name for p in release.download(tmp_path, selection=chosen)] == [
        e["path"].rsplit("/", 1)[1] for e in release.files("parquet", "train")
    ]
    with pytest.raises(UsageError, match=r"only='card' goes with a whole-release download"):
        release.download(tmp_path, "val", only="card")


def test_hand_built_selections_and_bad_arguments(release: Release) -> None:
    by_hand = Selection("val", None, pc.field("view_position") == "AP")
    resolved = release.selection(by_hand)
    assert len(resolved) == len(release.select("val", views=["AP"]))
    assert len(release.selection("test")) == release.counts()["test"]
    with pytest.raises(UsageError, match=r"views \['LAT'\] are not view positions of NIH; use PA or AP"):
        release.select(views=["LAT"])
    with pytest.raises(UsageError, match=r"expected a split name .* got list"):
        release.to_pandas(["train"])  # type: ignore[arg-type]


# --- the light import ---------------------------------------------------------------------------------------------

FORBIDDEN_TOP = ("airflow", "great_expectations")
FORBIDDEN_PIPELINE = ("pipeline.curate", "pipeline.convert", "pipeline.layers", "pipeline.ingest", "pipeline.run")
OPTIONAL = ("torch", "duckdb", "webdataset", "wids", "datasets")
LIGHT_SCRIPT = """
import json, sys
from pipeline import ReleaseClient
release = ReleaseClient().open()
chosen = release.select("train", views=["PA"], unique_patients="first")
row = release.get(chosen.image_ids[0])
frame = release.to_pandas(chosen, image="small")
print(json.dumps({"modules": sorted(sys.modules), "rows": len(frame), "png": row["image"][:4].hex()}))
"""


def _heavy(modules: list[str]) -> list[str]:
    return [
        m for m in modules
        if m.split(".")[0] in (*FORBIDDEN_TOP, *OPTIONAL)
        or m.startswith(FORBIDDEN_PIPELINE)
        or (m.startswith("pipeline.plan.") and m != "pipeline.plan.split")
    ]  # fmt: skip


def test_reading_with_the_client_imports_no_airflow_great_expectations_or_stage(
    published: dict[str, Any], s3_stack: StackInfo, tmp_path: Path
) -> None:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CXR_"))}
    env = {**keep, **s3_stack.consumer_env(), "CXR_STORE": URI, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert _heavy(out["modules"]) == []
    assert out["png"] == "89504e47"
    assert out["rows"] > 0


def _module_level_imports(path: Path) -> list[str]:
    """Modules a file imports when it is imported (not inside functions, nor under ``if TYPE_CHECKING:``)."""

    def walk(body: list[ast.stmt]) -> list[str]:
        found: list[str] = []
        for node in body:
            if isinstance(node, ast.Import):
                found += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                found += walk(node.orelse)
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        found += walk(child.body if isinstance(child, ast.ExceptHandler) else [child])
        return found

    return walk(ast.parse(path.read_text()).body)


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _reach(start: list[str]) -> dict[str, list[str]]:
    """Every pipeline module the ``start`` modules reach at module level, with its module-level imports."""
    seen: dict[str, list[str]] = {}
    todo = list(start)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        imports = _module_level_imports(path)
        seen[name] = imports
        todo += [m for m in [*imports, *parents] if m.split(".")[0] == "pipeline"]
    return seen


def test_no_module_the_reader_reaches_at_import_imports_airflow_or_great_expectations() -> None:
    readers = [f"pipeline.read.{p.stem}" for p in (ROOT / "pipeline/read").glob("*.py") if p.stem != "__init__"]
    reached = _reach(readers)
    assert {"pipeline.read.client", "pipeline.read.selection", "pipeline.read.access"} <= set(reached)
    bad = {m: [i for i in imports if i.split(".")[0] in FORBIDDEN_TOP] for m, imports in reached.items()}
    assert {m: i for m, i in bad.items() if i} == {}
    from_client = _reach(["pipeline.read.client"])
    assert _heavy(sorted(from_client)) == []
    optional = {m: [i for i in imports if i.split(".")[0] in OPTIONAL] for m, imports in from_client.items()}
    assert {m: i for m, i in optional.items() if i} == {}, "optional packages are imported inside functions only"
