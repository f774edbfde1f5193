"""``release.torch_dataset``: a map-style dataset read row group by row group, with a seeded, resumable order.

One release of 60 synthetic images with a small Google-format expert layer, small copies of 32 px and row groups of
a few images, read with the consumer's read-only keys, by ``DataLoader(num_workers=2)`` and in a separate process.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pipeline import nih
from pipeline.dev.stack import StackInfo
from pipeline.errors import UsageError
from pipeline.read.client import Release, ReleaseClient
from pipeline.read.torchdata import ReleaseDataset, decode_png, resumable_sampler
from tests.integration import releases

pytestmark = pytest.mark.integration
URI = "s3://torch-dataset/cxr"
EXPERT = ("fracture", "pneumothorax", "airspace_opacity", "nodule_or_mass")


def _write_expert_layer(source: Path, names: list[str], patients: list[str]) -> dict[str, list[bool | None]]:
    """Google's test file for half the images, every cell YES, NO or empty (not read); returns what it says."""
    header = "Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass\n"
    cells = {name: [("YES", "NO", "", "no")[(i + k) % 4] for k in range(4)] for i, name in enumerate(names[::2])}
    rows = [f"{name},{patients[names.index(name)]},{','.join(c)}\n" for name, c in cells.items()]
    (source / "test_labels.csv").write_text(header + "".join(rows))
    return {
        name.removesuffix(".png"): [None if c == "" else c.upper() == "YES" for c in v] for name, v in cells.items()
    }


@pytest.fixture(scope="module")
def published(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = releases.make_source(tmp_path_factory.mktemp("torchdata") / "source", images=60, seed=33)
    entry = pd.read_csv(source / "Data_Entry_2017.csv", dtype=str)
    expert = _write_expert_layer(source, entry["Image Index"].tolist(), entry["Patient ID"].tolist())
    store = releases.new_store(s3_stack, URI.split("/")[2])
    releases.publish(store, source, "torch", release="v1", annotations=("google=test_labels.csv",),
                     row_group_bytes=8_000, variant_size=32, min_shards=2)  # fmt: skip
    client = ReleaseClient(URI, endpoint_url=s3_stack.endpoint_url, access_key_id=s3_stack.consumer_access_key_id,
                           secret_access_key=s3_stack.consumer_secret_access_key)  # fmt: skip
    release = client.open("v1")
    parts = {}  # image_id -> (full PNG, small PNG), read straight from the Parquet files
    for path in release.files("parquet"):
        if path["path"].startswith("parquet/"):
            table = pq.read_table(io.BytesIO(store.get_bytes(release.key(path["path"]))))
            parts.update({r["image_id"]: (r["image"], r["image_small"]) for r in table.to_pylist()})
    meta = release.metadata().to_pandas().set_index("image_id")
    return {"release": release, "meta": meta, "parts": parts, "expert": expert, "stack": s3_stack}


def _ids(loader: DataLoader[Any]) -> list[str]:
    return [image_id for batch in loader for image_id in batch["image_id"]]


def _loader(data: Any, sampler: Any) -> DataLoader[Any]:
    return DataLoader(data, batch_size=4, sampler=sampler, num_workers=2)


def _png(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)), dtype=np.uint8)


def test_two_workers_give_each_sample_once_in_the_seeded_order(published: dict[str, Any]) -> None:
    data = published["release"].torch_dataset("train", image="small")
    train = sorted(published["meta"].index[published["meta"]["split"] == "train"])
    first = _ids(_loader(data, resumable_sampler(data, seed=11)))
    assert sorted(first) == train == sorted(data.image_ids)  # every train image, none twice
    assert first == [data.image_ids[i] for i in resumable_sampler(data, seed=11)]
    assert _ids(_loader(data, resumable_sampler(data, seed=11))) == first
    assert first != train  # shuffled
    other_seed = [data.image_ids[i] for i in resumable_sampler(data, seed=12)]
    next_epoch = [data.image_ids[i] for i in resumable_sampler(data, seed=11, epoch=1)]
    assert first not in (other_seed, next_epoch)
    assert sorted(other_seed) == sorted(next_epoch) == train


def test_resuming_mid_epoch_gives_exactly_the_remaining_samples(published: dict[str, Any]) -> None:
    data = published["release"].torch_dataset("train")
    whole = _ids(_loader(data, resumable_sampler(data, seed=5, epoch=3)))
    batches_done = 3
    resumed = resumable_sampler(data, seed=5, epoch=3, start=batches_done * 4)
    assert len(resumed) == len(whole) - 12
    assert _ids(_loader(data, resumed)) == whole[12:]
    resumed.set_epoch(4)  # the next epoch starts from its beginning
    assert sorted(data.image_ids[i] for i in resumed) == sorted(whole)
    with pytest.raises(UsageError, match="start="):
        resumable_sampler(data, seed=5, start=len(data) + 1)


def test_ranks_share_the_epoch_without_overlap(published: dict[str, Any]) -> None:
    data = published["release"].torch_dataset(None)
    parts = [list(resumable_sampler(data, seed=2, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for part in parts for i in part) == list(range(len(data)))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    even = [list(resumable_sampler(data, seed=2, rank=r, world_size=7, drop_last=True)) for r in range(7)]
    assert {len(part) for part in even} == {len(data) // 7}
    assert len({i for part in even for i in part}) == len(data) // 7 * 7
    with pytest.raises(UsageError, match="rank=3"):
        resumable_sampler(data, seed=2, rank=3, world_size=3)


@pytest.mark.parametrize("image", ["full", "small"])
def test_images_are_the_parquet_rows_pngs_decoded(published: dict[str, Any], image: str) -> None:
    data = published["release"].torch_dataset("val", image=image)
    assert len(data) == int((published["meta"]["split"] == "val").sum()) > 0
    for item in (data[i] for i in range(len(data))):
        full, small = published["parts"][item["image_id"]]
        expected = _png(full if image == "full" else small)
        assert item["image"].dtype == torch.uint8
        assert item["image"].shape == (1, *expected.shape)
        assert torch.equal(item["image"][0], torch.from_numpy(expected))
    assert data[-1]["image_id"] == data.image_ids[-1]
    side = max(data[0]["image"].shape[1:])
    assert side == 32 if image == "small" else side == 64


def test_nih_labels_follow_the_manifests_label_vector_order(published: dict[str, Any]) -> None:
    release: Release = published["release"]
    data = release.torch_dataset("test")
    columns = [nih.finding_column(label) for label in release.manifest["label_vector_order"]]
    assert list(data.label_names) == columns
    assert len(columns) == 15
    for item in (data[i] for i in range(len(data))):
        row = published["meta"].loc[item["image_id"]]
        assert item["labels"].dtype == torch.float32
        assert item["labels"].tolist() == [float(row[c]) for c in columns]


def test_a_layers_labels_are_its_boolean_fields_nan_where_not_read(published: dict[str, Any]) -> None:
    data = published["release"].torch_dataset(None, labels="google", transform=lambda t: t.float().div(255))
    assert data.label_names == EXPERT
    covered = read = 0
    for i in range(len(data)):
        item = data[i]
        assert item["image"].dtype == torch.float32
        assert float(item["image"].max()) <= 1.0
        wanted = published["expert"].get(item["image_id"], [None] * 4)
        got = item["labels"].tolist()
        assert [None if math.isnan(v) else v == 1.0 for v in got] == wanted, item["image_id"]
        covered += item["image_id"] in published["expert"]
        read += sum(v is not None for v in wanted)
    assert 0 < covered < len(data)
    assert read > 0


def test_selections_and_bad_arguments(published: dict[str, Any]) -> None:
    release: Release = published["release"]
    meta = published["meta"]
    pa_train = release.torch_dataset(release.select("train", views=["PA"]))
    assert pa_train.image_ids == sorted(meta.index[(meta["split"] == "train") & (meta["view_position"] == "PA")])
    assert all(pa_train[i]["image_id"] == pa_train.image_ids[i] for i in range(len(pa_train)))
    nobody = release.torch_dataset(release.select("test", where=pc.field("age_years") > 200))
    assert len(nobody) == len(resumable_sampler(nobody, seed=1, batch_size=4, num_workers=2)) == 0
    with pytest.raises(IndexError):
        nobody[0]
    with pytest.raises(UsageError, match="no annotation layer 'nope'"):
        release.torch_dataset("train", labels="nope")
    with pytest.raises(UsageError, match="image='medium'"):
        release.torch_dataset("train", image="medium")
    with pytest.raises(UsageError, match="'dev' is not one of"):
        release.torch_dataset("dev")


def _reads_by_worker(data: Counting, sampler: Any) -> tuple[dict[int, int], dict[int, set[int]]]:
    """Row groups each worker read, and those of the samples it served, in one epoch."""
    served: dict[int, set[int]] = defaultdict(set)
    reads: dict[int, int] = {}
    for batch in _loader(data, sampler):
        for index, worker, count in zip(batch["index"], batch["worker"], batch["reads"], strict=True):
            served[int(worker)].add(int(data.row_groups[int(index)]))
            reads[int(worker)] = max(reads.get(int(worker), 0), int(count))
    return reads, served


def test_each_worker_reads_the_row_groups_of_its_samples_once(published: dict[str, Any]) -> None:
    data = Counting(published["release"], "train", image="small", cache_row_groups=2)
    groups = len(set(data.row_groups.tolist()))
    assert groups > 4  # several row groups, so the bound means something
    data[0]  # read in this process before the workers fork: they open their own
    reads, served = _reads_by_worker(data, resumable_sampler(data, seed=3))
    assert set(served) == {0, 1}
    assert reads == {w: len(served[w]) for w in served}  # none read twice
    split_reads, split_served = _reads_by_worker(data, resumable_sampler(data, seed=3, batch_size=4, num_workers=2))
    assert split_reads == {w: len(split_served[w]) for w in split_served}
    assert sum(split_reads.values()) <= groups + 1  # each worker reads its own row groups, not all of them
    assert sum(split_reads.values()) < sum(reads.values())


def test_the_cache_stays_bounded_under_a_random_order(published: dict[str, Any]) -> None:
    data = published["release"].torch_dataset("train", cache_row_groups=1)
    for i in resumable_sampler(data, seed=9, block=False):
        data[i]
        assert data.cache_info()["cached"] <= 1
    info = data.cache_info()
    assert info["reads"] + info["hits"] == len(data)
    assert info["reads"] > len(set(data.row_groups.tolist()))  # groups were read again: none was kept beyond one


def test_a_pickled_or_spawned_dataset_reads_for_itself(published: dict[str, Any]) -> None:
    data = published["release"].torch_dataset("val")
    first = data[0]
    copy = pickle.loads(pickle.dumps(data))
    assert copy.cache_info() == {"reads": 0, "hits": 0, "cached": 0}
    assert torch.equal(copy[0]["image"], first["image"])
    assert copy.cache_info()["reads"] == 1
    spawned = DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context="spawn")  # macOS's default
    assert _ids(spawned) == data.image_ids


def test_a_batch_decoded_by_threads_is_the_batch_decoded_one_by_one(published: dict[str, Any]) -> None:
    release: Release = published["release"]
    single = release.torch_dataset("train", decode_threads=1)
    groups = len(set(single.row_groups.tolist()))
    threaded = release.torch_dataset("train", decode_threads=3, cache_row_groups=groups)
    order = list(resumable_sampler(threaded, seed=4, block=False))  # a batch across all row groups
    batch, one_by_one = threaded.__getitems__(order), [single[i] for i in order]
    assert [item["image_id"] for item in batch] == [threaded.image_ids[i] for i in order]
    assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["labels"], b["labels"])
               for a, b in zip(batch, one_by_one, strict=True))  # fmt: skip
    assert threaded.cache_info()["reads"] == groups  # no row group fetched twice by threads at once
    with pytest.raises(UsageError, match="decode_threads=0"):
        release.torch_dataset("train", decode_threads=0)


def test_releases_without_row_group_ranges_are_indexed_from_their_files(published: dict[str, Any]) -> None:
    release: Release = published["release"]
    files = [{k: v for k, v in f.items() if k != "row_groups"} for f in release.manifest["files"]]
    old = ReleaseDataset(replace(release, manifest={**release.manifest, "files": files}), "train")
    new = release.torch_dataset("train")
    assert old.image_ids == new.image_ids
    assert np.array_equal(old.row_groups, new.row_groups)
    assert all(torch.equal(old[i]["image"], new[i]["image"]) for i in range(len(old)))


def test_a_separate_process_with_read_only_keys_sees_the_same_order(published: dict[str, Any], tmp_path: Path) -> None:
    script = tmp_path / "read.py"
    script.write_text(
        "import json\nfrom torch.utils.data import DataLoader\nfrom pipeline.read.client import ReleaseClient\n"
        "from pipeline.read.torchdata import resumable_sampler\n"
        "if __name__ == '__main__':\n"
        "    data = ReleaseClient().open('v1').torch_dataset('train', image='small')\n"
        "    loader = DataLoader(data, batch_size=4, sampler=resumable_sampler(data, seed=11), num_workers=2)\n"
        "    print(json.dumps([i for batch in loader for i in batch['image_id']]))\n"
    )
    stack: StackInfo = published["stack"]
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CXR_"))}
    env = {**keep, **stack.consumer_env(), "CXR_STORE": URI, "PYTHONPATH": str(Path(__file__).parents[3])}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = published["release"].torch_dataset("train", image="small")
    assert json.loads(done.stdout) == [data.image_ids[i] for i in resumable_sampler(data, seed=11)]


class Counting(ReleaseDataset):
    """Items that also say their index, the worker that read them and that worker's row-group reads so far."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = super().__getitem__(i)
        worker = torch.utils.data.get_worker_info()
        return {**item, "index": i, "worker": -1 if worker is None else worker.id, "reads": self.cache_info()["reads"]}


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_decode_png_gives_gray8_pixels_whatever_the_pngs_layout(mode: str) -> None:
    gray = np.random.default_rng(3).integers(0, 256, (24, 40), dtype=np.uint8)
    image = Image.fromarray(gray, mode="L")
    image = image.convert("RGB") if mode == "RGB" else image.convert("I;16") if mode == "I;16" else image
    out = io.BytesIO()
    image.save(out, format="PNG")
    tensor = decode_png(out.getvalue())
    assert tensor.dtype == torch.uint8
    assert tuple(tensor.shape) == (1, 24, 40)
    with Image.open(io.BytesIO(out.getvalue())) as img:
        expected = np.array(img if img.mode == "L" else img.convert("L"), dtype=np.uint8)
    assert np.array_equal(tensor[0].numpy(), expected)
