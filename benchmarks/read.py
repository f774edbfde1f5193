"""Read throughput: images/s delivered to a PyTorch loop from the store, by every read path, next to peers and floor.

One release of synthetic full-size images (with the 256 px copy) is published into a local SeaweedFS; then its
``train`` split is read into a ``DataLoader`` with ``CXR_BENCH_READ_WORKERS`` (default 2) workers, each image
decoded into a uint8 tensor, by:

- **ours**: WebDataset (only the member used: ``png`` or ``small.png``), Parquet row groups split between the
  workers (only the pixel column used: ``image`` or ``image_small``), and ``release.torch_dataset`` (map-style, a
  block-shuffled resumable sampler; with its default decode threads and with one), each for the full and the
  small image;
- **peers**, on the same bytes in the same store: Hugging Face ``datasets`` streaming the Parquet files (its
  ``Image`` feature decodes the column), and plain ``webdataset`` over the tars as its README shows it
  (``.decode("pil")``, which decodes every image member of a sample);
- **ceiling**: the same ``DataLoader`` over the split's PNGs held in memory, decoded as ours are (no store, no
  fetch): what the loader's own workers, collation and IPC leave of the floor on these cores;
- **floor**, measured in the same run: with the store on machines of its own, the slower of the decode CPU per image
  (one core, with the fastest decoder here: ``torch_dataset``'s ``decode_png``) over the cores and the store's GET
  throughput (the shards fetched 8 at a time) over the bytes per image; with the store on these cores (as here),
  decode CPU plus the GETs' CPU per image (client and SeaweedFS) over the cores. Ratios are to the second.

Each reader's figure is its throughput over whole passes after the first (which starts the workers:
``persistent_workers``), as many as take ``CXR_BENCH_READ_SECONDS`` (default 3; at least one pass): one pass of the
small copy takes a third of a second here, and a pass's start and tail (the first fetch, the last worker finishing
alone) would otherwise weigh far more than in a training epoch of the real split.

``CXR_BENCH_READ_IMAGES`` (default 800) sets the release's size, ``CXR_BENCH_REPEAT`` (default 3) the rounds
(interleaved; the table gives the median), ``CXR_BENCH_PEERS=0`` leaves the peers out, ``CXR_BENCH_READERS``
(comma-separated parts of reader names, e.g. ``torch_dataset``) measures only the readers it names.
"""

from __future__ import annotations

import io
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.dev.stack import LocalS3, StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.read.client import Release, ReleaseClient
from pipeline.run import tasks
from pipeline.store.storage import Store

ROOT = Path(__file__).resolve().parents[1]
IMAGES = int(os.environ.get("CXR_BENCH_READ_IMAGES", "800"))
REPEAT = int(os.environ.get("CXR_BENCH_REPEAT", "3"))
WORKERS = int(os.environ.get("CXR_BENCH_READ_WORKERS", "2"))
#: Batch size per image kind (``CXR_BENCH_READ_BATCH``: full,small): what training at that resolution takes on one
#: GPU, 16 images of 1024 px and 64 of 256 px.
BATCH = dict(
    zip(("full", "small"), (int(n) for n in os.environ.get("CXR_BENCH_READ_BATCH", "16,64").split(",")), strict=True)
)
#: Seconds of timed passes per reader and size (at least one pass): the small copy's 580 images take 0.3 s a pass.
MIN_SECONDS = float(os.environ.get("CXR_BENCH_READ_SECONDS", "3"))
BENCH_DIR = Path(os.environ.get("CXR_BENCH_DIR", ROOT / ".cxr" / "bench"))
CORES = os.cpu_count() or 1
SPLIT = "train"
URI = "s3://bench-read/cxr"
SIZES = ("full", "small")


def _source() -> Path:
    src = BENCH_DIR / f"read-{IMAGES}"
    if not (src / "Data_Entry_2017.csv").exists():
        synthesize(SynthConfig(dest=src, images=IMAGES, seed=11, overwrite=True))
    return src


def _publish(src: Path) -> None:
    params = {"source": str(src), "store": URI, "release": "bench", "variant_size": 256}
    cfg = tasks.config_from_params(params, run_id=f"bench-read-{time.time_ns()}")
    Store(cfg.store).ensure_bucket()
    tasks.run_all(cfg)


def _tensor(png: bytes) -> Any:
    """A PNG decoded by Pillow into a uint8 tensor, as the README's WebDataset and Parquet recipes do."""
    import torch

    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image.convert("L") if image.mode != "L" else image, dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).unsqueeze(0)


def _consume(loader: Any) -> int:
    """Images delivered by a loader (batches of tensors, or single samples)."""
    seen = 0
    for batch in loader:
        images = (batch.get("image", next(iter(batch.values())))) if isinstance(batch, dict) else batch
        seen += int(images.shape[0]) if images.dim() == 4 else 1
    return seen


def _webdataset(release: Release, size: str, plain: bool = False) -> Any:
    import webdataset as wds
    from torch.utils.data import DataLoader

    urls = release.shard_urls(SPLIT)
    if plain:  # the peer: webdataset's own decoding of every image member, as its README shows it
        data = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil").to_tuple("png")
        data = data.map(lambda sample: _pil_tensor(sample[0]))
    else:
        member = "png" if size == "full" else "small.png"
        data = wds.WebDataset(urls, shardshuffle=False, empty_check=False).to_tuple(member).map(lambda s: _tensor(s[0]))
    return DataLoader(data, batch_size=BATCH[size], num_workers=WORKERS, persistent_workers=True)


def _pil_tensor(image: Image.Image) -> Any:
    import torch

    return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.uint8).copy()).unsqueeze(0)


class _RowGroups:
    """An iterable over the split's Parquet row groups, each worker taking every n-th one (only one column read)."""

    def __init__(self, release: Release, column: str) -> None:
        self.client, self.column = release.client, column
        self.paths = [url.removeprefix("s3://") for url in release.parquet_urls(SPLIT)]

    def __iter__(self) -> Iterator[Any]:
        import pyarrow.parquet as pq
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        fs = self.client.filesystem()
        groups = [
            (path, i) for path in self.paths for i in range(pq.ParquetFile(fs.open_input_file(path)).num_row_groups)
        ]
        for path, index in groups[worker::workers]:
            table = pq.ParquetFile(fs.open_input_file(path)).read_row_group(index, columns=[self.column])
            for png in table.column(0).to_pylist():
                yield _tensor(png)


def _parquet(release: Release, size: str) -> Any:
    from torch.utils.data import DataLoader, IterableDataset

    class Groups(_RowGroups, IterableDataset):  # type: ignore[misc]
        pass

    return DataLoader(
        Groups(release, "image" if size == "full" else "image_small"), batch_size=None, num_workers=WORKERS
    )


def _torch_dataset(release: Release, size: str, threads: int = 2) -> Any:
    from torch.utils.data import DataLoader

    from pipeline.read.torchdata import resumable_sampler

    dataset = release.torch_dataset(SPLIT, image=size, decode_threads=threads)
    # each worker, its row groups
    sampler = resumable_sampler(dataset, seed=0, batch_size=BATCH[size], num_workers=WORKERS)
    return DataLoader(dataset, batch_size=BATCH[size], sampler=sampler, num_workers=WORKERS, persistent_workers=True)


def _hf_streaming(release: Release, size: str) -> Any:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Image as HFImage
    from datasets import load_dataset
    from torch.utils.data import DataLoader

    column = "image" if size == "full" else "image_small"
    data = load_dataset(
        "parquet", data_files={SPLIT: release.parquet_urls(SPLIT)}, storage_options=release.client.storage_options(),
        streaming=True,
    )[SPLIT].select_columns([column])  # fmt: skip
    data = data.cast_column(column, HFImage()).map(lambda row: {"pixels": _pil_tensor(row[column])})
    pixels = data.select_columns(["pixels"]).with_format("torch")
    return DataLoader(pixels, batch_size=BATCH[size], num_workers=WORKERS, persistent_workers=True)


def _in_memory(release: Release, size: str) -> Any:
    """The ceiling of a ``DataLoader`` here: the split's PNGs held in memory (no store), decoded as ours are."""
    from torch.utils.data import DataLoader, Dataset

    from pipeline.read.torchdata import decode_png

    column = "image" if size == "full" else "image_small"
    pngs = release.dataset(SPLIT).to_table(columns=[column]).column(0).to_pylist()

    class Held(Dataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return len(pngs)

        def __getitem__(self, i: int) -> Any:
            return decode_png(pngs[i])

    return DataLoader(Held(), batch_size=BATCH[size], num_workers=WORKERS, persistent_workers=True)


PATHS: dict[str, Callable[[Release, str], Any]] = {
    "ours: webdataset, one member": _webdataset,
    "ours: parquet row groups, one column": _parquet,
    "ours: torch_dataset (map-style)": _torch_dataset,
    "ours: torch_dataset, decode_threads=1": lambda release, size: _torch_dataset(release, size, 1),
}
#: Not a reader: what the ``DataLoader`` itself allows on these cores, with nothing to fetch.
CEILINGS: dict[str, Callable[[Release, str], Any]] = {"ceiling: DataLoader over PNGs held in memory": _in_memory}
PEERS: dict[str, Callable[[Release, str], Any]] = {
    "peer: HF datasets streaming parquet": _hf_streaming,
    "peer: webdataset .decode('pil')": lambda release, size: _webdataset(release, size, plain=True),
}


def _timed(make: Callable[[Release, str], Any], release: Release, size: str, expected: int) -> float:
    """Images/s over whole passes after the first (which starts the workers: not timed), as many as take
    ``MIN_SECONDS``: a training epoch is long, so a pass's own start and end must not count for more than in one."""
    loader = make(release, size)
    _consume(loader)
    start, passes = time.perf_counter(), 0
    while not passes or time.perf_counter() - start < MIN_SECONDS:
        seen = _consume(loader)
        if seen != expected:
            raise RuntimeError(f"{make.__name__} ({size}) delivered {seen} images, expected {expected}")
        passes += 1
    return passes * expected / (time.perf_counter() - start)


def _decode_s(release: Release, size: str) -> float:
    """CPU seconds per image to decode one image of this size (one core), on the release's own bytes: the split's
    images in turn, for at least a second of CPU."""
    from pipeline.read.torchdata import decode_png

    column = "image" if size == "full" else "image_small"
    pngs = release.dataset(SPLIT).to_table(columns=[column]).column(0).to_pylist()
    start, done = time.process_time(), 0
    while time.process_time() - start < 1.0:
        decode_png(pngs[done % len(pngs)])  # the fastest decoder this project has (torch_dataset's)
        done += 1
    return (time.process_time() - start) / done


def _cpu(store_pid: int) -> float:
    """CPU seconds so far of this process and of the store's (SeaweedFS shares these cores)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    fields = Path(f"/proc/{store_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return own.ru_utime + own.ru_stime + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _get_rate(release: Release, store_pid: int) -> tuple[float, float]:
    """The store's GET throughput over the split's tar shards, 8 at a time: bytes/s, and CPU seconds per byte
    (client and store)."""
    store = release.client.store
    shards = [f for f in release.files("wds", SPLIT) if f["path"].endswith(".tar")]
    start, cpu = time.perf_counter(), _cpu(store_pid)
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda f: len(store.get_bytes(release.key(f["path"]))), shards))
    total = sum(sizes)
    return total / (time.perf_counter() - start), (_cpu(store_pid) - cpu) / total


def _rows(rates: dict[str, list[float]], floors: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per reader and size (median images/s, ratio to the shared-cores floor), then the two floors."""
    rows = []
    for key, values in rates.items():
        name, size = key.rsplit("|", 1)
        median = statistics.median(values)
        rows.append({"size": size, "reader": name, "images/s": median, "x floor": median / floors[size]["shared"]})
    for size in SIZES:
        for which, text in (("own", "floor, store on its own machines"), ("shared", "floor, store on these cores")):
            value = floors[size][which]
            rows.append({"size": size, "reader": text, "images/s": value, "x floor": value / floors[size]["shared"]})
    return sorted(rows, key=lambda r: (SIZES.index(r["size"]), -r["images/s"]))


def _measure(
    info: StackInfo, peers: bool
) -> tuple[dict[str, list[float]], dict[str, dict[str, float]], dict[str, Any]]:
    os.environ.update(info.env())
    _publish(_source())
    release = ReleaseClient(URI).open("bench")
    expected = release.counts()[SPLIT]
    readers = {**PATHS, **CEILINGS, **(PEERS if peers else {})}
    wanted = [w for w in os.environ.get("CXR_BENCH_READERS", "").split(",") if w]
    readers = {k: v for k, v in readers.items() if not wanted or any(w in k for w in wanted)}
    rates: dict[str, list[float]] = {}
    decodes: dict[str, list[float]] = {size: [] for size in SIZES}
    for _ in range(REPEAT):  # the floor's decode cost is measured in every round, between the readers
        for name, make in readers.items():
            for size in SIZES:
                rates.setdefault(f"{name}|{size}", []).append(_timed(make, release, size, expected))
        for size in SIZES:
            decodes[size].append(_decode_s(release, size))
    get_rate, cpu_per_byte = _get_rate(release, info.pid)
    sizes = release.manifest["image_bytes"][SPLIT]
    floors: dict[str, dict[str, float]] = {}
    for size in SIZES:
        decode_s, per_image = statistics.median(decodes[size]), sizes[size] / expected
        floors[size] = {
            "own": min(CORES / decode_s, get_rate / per_image),  # the slower bound, the store elsewhere
            "shared": CORES / (decode_s + cpu_per_byte * per_image),  # decode and GETs share these cores
            "decode_ms": 1000 * decode_s,
            "bytes_per_image": per_image,
        }
    figures = {
        "images": expected,
        "get_mb_s": get_rate / 1e6,
        "get_cpu_ms_per_mb": cpu_per_byte * 1e9,
        "floors": floors,
    }
    return rates, floors, figures


def run() -> dict[str, Any]:
    """Measure every read path, the peers and the floor side by side; return the table and figures."""
    peers = os.environ.get("CXR_BENCH_PEERS", "1") != "0"
    with LocalS3() as info:
        rates, floors, figures = _measure(info, peers)
    rows = _rows(rates, floors)
    notes = [
        f"{figures['images']} {SPLIT} images of 1024x1024 (+256 px copy), {WORKERS} DataLoader workers, batches of "
        f"{BATCH['full']} full and {BATCH['small']} small images, {CORES} cores, store GET "
        f"{figures['get_mb_s']:.0f} MB/s, median of {REPEAT} interleaved rounds"
    ]
    for size in SIZES:
        ours = max(
            (r for r in rows if r["size"] == size and r["reader"].startswith("ours")), key=lambda r: r["images/s"]
        )
        best_peer = max(
            (r["images/s"] for r in rows if r["size"] == size and r["reader"].startswith("peer")), default=0
        )
        figures[f"fastest_{size}"] = ours["reader"]
        figures[f"x_floor_{size}"] = ours["x floor"]
        figures[f"x_peer_{size}"] = ours["images/s"] / best_peer if best_peer else None
        ratio = f", {figures[f'x_peer_{size}']:.2f}x the fastest peer" if best_peer else ""
        notes.append(f"{size}: fastest is {ours['reader']} at {ours['x floor']:.2f}x the floor{ratio}")
    return {"figures": figures, "table": rows, "notes": notes}
