"""Convert: real NIH images round-trip pixel-exact, odd modes become 8-bit gray once, outputs are reproducible."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from pipeline.curate import metadata
from pipeline.dev.stack import StackInfo
from pipeline.run import tasks
from tests.reference import DATA_ENTRY_FILE, IMAGES

pytestmark = pytest.mark.integration
ODD_MODES = {"00000001_001.png": "RGBA", "00000002_000.png": "LA", "00000003_000.png": "I;16", "00000003_001.png": "P"}


def _gray(path_or_bytes: Path | bytes) -> np.ndarray:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def _recode(gray: np.ndarray, mode: str) -> bytes:
    if mode == "RGBA":
        img = Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 255)]), "RGBA")
    elif mode == "LA":
        img = Image.fromarray(np.dstack([gray, np.full_like(gray, 255)]), "LA")
    elif mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257)
    else:
        img = Image.fromarray(gray, "L").convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        assert np.array_equal(np.asarray(img.convert("L")), gray), "palette must be lossless for the test"
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def real_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("real") / "source"
    src.mkdir()
    shutil.copy(DATA_ENTRY_FILE, src / "Data_Entry_2017_v2020.csv")
    with zipfile.ZipFile(src / "images_001.zip", "w") as zf:
        for path in IMAGES:
            mode = ODD_MODES.get(path.name)
            data = _recode(_gray(path), mode) if mode else path.read_bytes()
            zf.writestr(f"images_001/images/{path.name}", data)
    return src


def _run(source: Path, stack: StackInfo, store: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    cfg = tasks.config_from_params({"source": str(source), "store": store, "release": "r1"}, run_id=f"t-{store[-1]}")
    return tasks.run_all(cfg)


@pytest.fixture(scope="module")
def two_runs(real_source: Path, s3_stack: StackInfo, s3_client: Any) -> tuple[str, str]:
    s3_client.create_bucket(Bucket="convert")
    with pytest.MonkeyPatch.context() as mp:
        assert _run(real_source, s3_stack, "s3://convert/a", mp)["published"]
        assert _run(real_source, s3_stack, "s3://convert/b", mp)["published"]
    return "a", "b"


def _get(client: Any, key: str) -> bytes:
    body: bytes = client.get_object(Bucket="convert", Key=key)["Body"].read()
    return body


def _parquet_rows(client: Any, prefix: str) -> dict[str, dict[str, Any]]:
    import pyarrow.parquet as pq

    manifest = json.loads(_get(client, f"{prefix}/releases/r1/manifest.json"))
    rows: dict[str, dict[str, Any]] = {}
    for entry in manifest["files"]:
        if entry["path"].startswith("parquet/"):
            table = pq.read_table(io.BytesIO(_get(client, f"{prefix}/releases/r1/{entry['path']}")))
            rows.update({r["image_index"]: r for r in table.to_pylist()})
    return rows


def test_every_published_image_has_the_source_pixels(two_runs: Any, s3_client: Any) -> None:
    rows = _parquet_rows(s3_client, "a")
    assert set(rows) == {p.name for p in IMAGES}
    for path in IMAGES:
        published = _gray(rows[path.name]["image"])
        assert published.dtype == np.uint8
        assert published.ndim == 2
        assert np.array_equal(published, _gray(path)), path.name


def test_gray_images_keep_their_bytes_and_odd_modes_are_converted_once(two_runs: Any, s3_client: Any) -> None:
    rows = _parquet_rows(s3_client, "a")
    for path in IMAGES:
        row = rows[path.name]
        if path.name in ODD_MODES:
            assert row["converted"] is True
            assert row["original_mode"] in {"RGBA", "LA", "L;16", "P"}
        else:
            assert (row["converted"], row["original_mode"]) == (False, "L")
            assert row["image"] == path.read_bytes()
        assert row["sha256"] == hashlib.sha256(row["image"]).hexdigest()


def test_variant_is_the_256px_area_average(two_runs: Any, s3_client: Any) -> None:
    rows = _parquet_rows(s3_client, "a")
    for path in IMAGES[:3]:
        small = _gray(rows[path.name]["image_small"]).astype(int)
        blocks = _gray(path).reshape(256, 4, 256, 4).mean(axis=(1, 3))
        assert small.shape == (256, 256)
        assert np.abs(small - blocks).max() <= 1


def test_labels_and_metadata_equal_the_normalised_source_rows(two_runs: Any, s3_client: Any) -> None:
    rows = _parquet_rows(s3_client, "a")
    source = metadata.load_data_entry(DATA_ENTRY_FILE.read_bytes(), DATA_ENTRY_FILE.name).frame
    source = source.set_index("image_index")
    for name, row in rows.items():
        want = source.loc[name]
        assert row["labels"] == list(want["labels"])
        assert (row["patient_id"], row["follow_up"], row["sex"]) == (want["patient_id"], want["follow_up"], want["sex"])
        assert row["age_years"] == pytest.approx(float(want["age_years"]))
        assert row["original_width"] == want["original_width"]
        assert row["pixel_spacing_x"] == pytest.approx(want["pixel_spacing_x"])
        assert row["no_finding"] == ("No Finding" in row["labels"])
        assert row["cardiomegaly"] == ("Cardiomegaly" in row["labels"])


def test_two_runs_write_byte_identical_files(two_runs: Any, s3_client: Any) -> None:
    first = json.loads(_get(s3_client, "a/releases/r1/manifest.json"))
    second = json.loads(_get(s3_client, "b/releases/r1/manifest.json"))
    data = [f for f in first["files"] if f["path"].startswith(("parquet/", "webdataset/", "metadata"))]
    assert data
    assert data == [f for f in second["files"] if f["path"].startswith(("parquet/", "webdataset/", "metadata"))]


def test_webdataset_shards_read_back_and_match_their_index(two_runs: Any, s3_client: Any, tmp_path: Path) -> None:
    rows = _parquet_rows(s3_client, "a")
    seen: dict[str, dict[str, Any]] = {}
    for split in ("train", "val", "test"):
        index = json.loads(_get(s3_client, f"a/releases/r1/webdataset/{split}/index.json"))
        assert index["__kind__"] == "wids-shard-index-v1"
        for shard in index["shardlist"]:
            body = _get(s3_client, f"a/releases/r1/webdataset/{split}/{shard['url']}")
            assert hashlib.md5(body, usedforsecurity=False).hexdigest() == shard["md5sum"]
            assert len(body) == shard["filesize"]
            local = tmp_path / shard["url"]
            local.write_bytes(body)
            samples = list(wds.WebDataset(str(local), shardshuffle=False))
            assert len(samples) == shard["nsamples"]
            seen.update({s["__key__"]: s for s in samples})
    assert set(seen) == {name.removesuffix(".png") for name in rows}
    for key, sample in seen.items():
        row = rows[f"{key}.png"]
        assert sample["png"] == row["image"]
        assert json.loads(sample["json"])["labels"] == row["labels"]
        vector = np.load(io.BytesIO(sample["labels.npy"]))
        assert int(vector[-1]) == int(row["no_finding"])


def test_shard_size_and_variant_off_are_honoured_from_the_command_line(
    real_source: Path, s3_stack: StackInfo, s3_client: Any, tmp_path: Path
) -> None:
    from tests.integration.releases import cxr

    s3_client.create_bucket(Bucket="convert-small")
    args = ["run", "--source", str(real_source), "--store", "s3://convert-small/c", "--release", "r1"]
    done = cxr([*args, "--shard-size-mb", "1", "--variant-size", "0"], s3_stack.env())
    assert done.returncode == 0, done.stderr
    manifest = json.loads(
        s3_client.get_object(Bucket="convert-small", Key="c/releases/r1/manifest.json")["Body"].read()
    )
    tars = sorted(f["path"] for f in manifest["files"] if f["path"].endswith(".tar"))
    for split in {path.split("/")[1] for path in tars}:
        names = [path.rsplit("/", 1)[1] for path in tars if path.split("/")[1] == split]
        assert names == [f"{split}-{i:06d}.tar" for i in range(len(names))]  # numbered from 0, no gaps
    assert len(tars) > 3  # 8 images of ~0.4 MB in 1 MB shards: more than one shard per split
    largest_image = max(path.stat().st_size for path in IMAGES)
    for entry in manifest["files"]:
        if entry["path"].endswith(".tar"):
            assert entry["size"] <= (1 << 20) + largest_image + 64 * 1024, entry  # a shard closes once past 1 MB
            local = tmp_path / Path(entry["path"]).name
            local.write_bytes(
                s3_client.get_object(Bucket="convert-small", Key=f"c/releases/r1/{entry['path']}")["Body"].read()
            )
            for sample in wds.WebDataset(str(local), shardshuffle=False):
                assert "small.png" not in sample  # variant off: no downsized member
    import pyarrow.parquet as pq

    for entry in manifest["files"]:
        if entry["path"].startswith("parquet/"):
            body = s3_client.get_object(Bucket="convert-small", Key=f"c/releases/r1/{entry['path']}")["Body"].read()
            assert pq.read_table(io.BytesIO(body)).column("image_small").null_count == entry["rows"]
