"""Convert throughput: our Parquet + WebDataset conversion next to its floor and to peers, in one run.

On the same synthetic full-size images (cached under ``.cxr/bench/convert-<N>``):

- **ours**: the convert stage (every unit of a release: tar shard + Parquet, into a local SeaweedFS), with the
  256 px variant off and on;
- **floor**: the CPU cost of what must be decoded (CRC + SHA-256 only without the variant; a full decode with
  it), spread over this machine's cores, or the bytes written divided by the store's PUT throughput measured
  here, whichever is slower;
- **peers**: Hugging Face ``datasets`` (Image feature -> ``to_parquet``) and img2dataset (local files ->
  WebDataset / Parquet, with and without a 256 px resize), run from their own virtualenv
  (``.cxr/bench/peers-venv``, created on first use) on the same PNG files.

Our path writes both formats and uploads them; each peer writes one format to local disk, so the comparison
leans in the peers' favour. ``CXR_BENCH_CONVERT_IMAGES`` (default 400) sets the number of images.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline import images, tasks
from pipeline.stack import LocalS3, StackInfo
from pipeline.storage import Store
from pipeline.synth import SynthConfig, synthesize

ROOT = Path(__file__).resolve().parents[1]
IMAGES = int(os.environ.get("CXR_BENCH_CONVERT_IMAGES", "400"))
BENCH_DIR = Path(os.environ.get("CXR_BENCH_DIR", ROOT / ".cxr" / "bench"))
PEERS_VENV = BENCH_DIR / "peers-venv"
PEER_PINS = ["datasets==5.2.0", "img2dataset==1.47.0"]
CORES = os.cpu_count() or 1


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and its children) of one call."""
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def _source() -> Path:
    src = BENCH_DIR / f"convert-{IMAGES}"
    if not (src / "Data_Entry_2017.csv").exists():
        synthesize(SynthConfig(dest=src, images=IMAGES, seed=5, overwrite=True))
    return src


def _loose_files(src: Path) -> Path:
    files = BENCH_DIR / f"convert-{IMAGES}-files"
    if len(list(files.glob("*.png"))) != IMAGES:
        files.mkdir(parents=True, exist_ok=True)
        for archive in sorted(src.glob("images_*.zip")):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if name.endswith(".png"):
                        (files / Path(name).name).write_bytes(zf.read(name))
    return files


def _ours(src: Path, info: StackInfo, variant: int) -> dict[str, Any]:
    params = {"source": str(src), "store": f"s3://bench-convert/v{variant}", "variant_size": variant}
    cfg = tasks.config_from_params(params, run_id=f"bench-{variant}-{time.time_ns()}")
    Store(cfg.store).ensure_bucket()
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    units = tasks.plan_release(cfg, shards, tasks.curate_metadata(cfg))
    written: list[int] = []
    wall, cpu = _measure(
        lambda: written.extend(sum(f["size"] for f in tasks.convert_unit(cfg, unit)["files"]) for unit in units)
    )
    return {"wall": wall, "cpu": cpu, "bytes": sum(written)}


def _put_mb_s(info: StackInfo, sample: bytes, count: int = 200) -> float:
    store = Store(tasks.config_from_params({"source": ".", "store": "s3://bench-convert/put"}, "put").store)
    store.ensure_bucket()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: store.put_bytes(f"put/{i}", sample), range(count)))
    return len(sample) * count / (time.perf_counter() - start) / 1e6


def _decode_cost(files: Path, variant: int) -> float:
    """CPU seconds per image of what must be decoded (one core)."""
    paths = sorted(files.glob("*.png"))[:100]
    start = time.process_time()
    for path in paths:
        data = path.read_bytes()
        images.check_png(data)
        if variant:
            with Image.open(path) as img:
                img.load()
    return (time.process_time() - start) / len(paths)


def _peer(script: str, *args: str) -> tuple[float, float]:
    cmd = [str(PEERS_VENV / "bin" / "python"), str(ROOT / "benchmarks" / "peers" / script), *args]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return _measure(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env))


def _ensure_peers() -> bool:
    if not (PEERS_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", *PEER_PINS], check=True)
    return (PEERS_VENV / "bin" / "python").exists()


def _row(path: str, tool: str, wall: float, cpu: float, floor: float | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "tool": tool,
        "images/s": IMAGES / wall,
        "cpu ms/img": 1000 * cpu / IMAGES,
        "vs floor": (IMAGES / wall) / floor if floor else "",
    }


def _peer_rows(files: Path) -> list[dict[str, Any]]:
    out = BENCH_DIR / "peer-out" / str(time.time_ns())
    runs = [
        ("full size", "HF datasets -> parquet", "hf_parquet.py", [str(files), str(out / "hf")]),
        (
            "full size",
            "img2dataset -> webdataset",
            "img2dataset_run.py",
            [str(files), str(out / "i2d-w"), "webdataset", "0"],
        ),
        ("full size", "img2dataset -> parquet", "img2dataset_run.py", [str(files), str(out / "i2d-p"), "parquet", "0"]),
        (
            "+256 px",
            "img2dataset -> webdataset",
            "img2dataset_run.py",
            [str(files), str(out / "i2d-w256"), "webdataset", "256"],
        ),
    ]
    return [_row(path, tool, *_peer(script, *args)) for path, tool, script, args in runs]


def run() -> dict[str, Any]:
    """Measure ours, the floor and the peers side by side; return the table and raw figures."""
    src = _source()
    files = _loose_files(src)
    rows, figures = [], {}
    with LocalS3() as info:
        os.environ.update(info.env())
        put = _put_mb_s(info, next(files.glob("*.png")).read_bytes())
        for variant, label in ((0, "full size"), (256, "+256 px")):
            ours = _ours(src, info, variant)
            floor = min(CORES / _decode_cost(files, variant), put * 1e6 / (ours["bytes"] / IMAGES))
            rows.append(_row(label, "ours -> parquet + webdataset", ours["wall"], ours["cpu"], floor))
            rows.append(_row(label, "floor", IMAGES / floor, 0.0, floor))
            figures[label] = {**ours, "floor_images_s": floor}
    if _ensure_peers():
        rows += _peer_rows(files)
    notes = [
        f"{IMAGES} images of 1024x1024, {CORES} cores, {platform.processor() or platform.machine()}, "
        f"store PUT {put:.0f} MB/s (same run)"
    ]
    return {"images": IMAGES, "put_mb_s": put, "figures": figures, "table": rows, "notes": notes}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
