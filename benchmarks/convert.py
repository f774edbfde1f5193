"""Convert throughput: our Parquet + WebDataset conversion next to its floor and to peers, in one run.

On the same synthetic full-size images (cached under ``.cxr/bench/convert-<N>``):

- **ours**: the convert stage (every unit of a release: tar shard + Parquet, into a local SeaweedFS), with the
  256 px variant off and on;
- **floor**: what cannot be avoided: the CPU of what must be decoded (CRC + SHA-256 without the variant, a
  full decode with it) and the bytes written, at the store's PUT throughput measured here with the same
  images. Two figures: with the store on machines of its own the slower of the two bounds the run
  (``floor, own store``); here the store runs on the same cores, so the two CPU costs add up (``floor,
  shared cores``: the PUTs' client and store CPU per byte, measured in the same PUT run);
- **peers**: Hugging Face ``datasets`` (Image feature -> ``to_parquet``) and img2dataset (local files ->
  WebDataset / Parquet, with and without a 256 px resize), run from their own virtualenv
  (``.cxr/bench/peers-venv``, created on first use) on the same PNG files.

Our path reads the raw zone from the store, writes both formats and uploads them; each peer reads local files
and writes one format to local disk, so the comparison leans in the peers' favour. Every measurement runs
``CXR_BENCH_REPEAT`` (default 3) rounds, interleaved, and the table gives the median. The store's CPU (the
SeaweedFS process) is reported beside the client's. ``CXR_BENCH_CONVERT_IMAGES`` (default 400) sets the
number of images; ``CXR_BENCH_PEERS=0`` leaves the peers out.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline import png as images
from pipeline.dev.stack import LocalS3, StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.run import tasks
from pipeline.store.storage import Store

ROOT = Path(__file__).resolve().parents[1]
IMAGES = int(os.environ.get("CXR_BENCH_CONVERT_IMAGES", "400"))
REPEAT = int(os.environ.get("CXR_BENCH_REPEAT", "3"))
BENCH_DIR = Path(os.environ.get("CXR_BENCH_DIR", ROOT / ".cxr" / "bench"))
PEERS_VENV = BENCH_DIR / "peers-venv"
PEER_PINS = ["datasets==5.2.0", "img2dataset==1.47.0"]
CORES = os.cpu_count() or 1
PATHS = ("full size", "+256 px")


@dataclass(frozen=True)
class Timing:
    """One measured call: wall seconds, client CPU seconds (this process and its children), store CPU seconds."""

    wall: float
    cpu: float
    store_cpu: float


def _cpu(store_pid: int) -> float:
    """CPU seconds of this process and its children: those that exited and those still running (decode workers
    live from unit to unit, so they have not exited when a measurement ends), but not the store's process."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _live_children_cpu(store_pid)


def _live_children_cpu(store_pid: int) -> float:
    """CPU seconds of this process's running children other than ``store_pid`` (measured apart)."""
    total = 0.0
    for listing in Path("/proc/self/task").glob("*/children"):
        for pid in map(int, listing.read_text().split()):
            if pid == store_pid:
                continue
            try:
                total += store_cpu(pid)
            except (FileNotFoundError, ProcessLookupError):  # exited meanwhile: RUSAGE_CHILDREN has it
                continue
    return total


def store_cpu(pid: int) -> float:
    """CPU seconds the store process (SeaweedFS) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(fn: Callable[[], Any], store_pid: int) -> Timing:
    wall, cpu, store = time.perf_counter(), _cpu(store_pid), store_cpu(store_pid)
    fn()
    return Timing(time.perf_counter() - wall, _cpu(store_pid) - cpu, store_cpu(store_pid) - store)


def _source() -> Path:
    src = BENCH_DIR / f"convert-{IMAGES}"
    if not (src / "Data_Entry_2017.csv").exists():
        synthesize(SynthConfig(dest=src, images=IMAGES, seed=5, overwrite=True))
    return src


def loose_files(src: Path, images: int = IMAGES, name: str = "convert") -> Path:
    """The PNGs of the synthetic source ``src`` (``images`` of them) as loose files (for the floor and the peers)."""
    files = BENCH_DIR / f"{name}-{images}-files"
    if len(list(files.glob("*.png"))) != images:
        files.mkdir(parents=True, exist_ok=True)
        for archive in sorted(src.glob("images_*.zip")):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if name.endswith(".png"):
                        (files / Path(name).name).write_bytes(zf.read(name))
    return files


def _ours(src: Path, info: StackInfo, variant: int, round_no: int) -> tuple[Timing, int]:
    """Extract and plan into a fresh prefix (not timed), then convert every unit; return the timing and bytes."""
    params = {"source": str(src), "store": f"s3://bench-convert/v{variant}-r{round_no}", "variant_size": variant}
    cfg = tasks.config_from_params(params, run_id=f"bench-{variant}-{time.time_ns()}")
    Store(cfg.store).ensure_bucket()
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    units = tasks.plan_release(cfg, shards, tasks.curate_metadata(cfg))
    written: list[int] = []
    timing = _measure(
        lambda: written.extend(sum(f["size"] for f in tasks.convert_unit(cfg, unit)["files"]) for unit in units),
        info.pid,
    )
    return timing, sum(written)


def measure_put(files: Path, info: StackInfo, round_no: int, bucket: str = "bench-convert") -> tuple[Timing, int]:
    """PUT every image (read beforehand) 16 at a time with its checksum, as the store's throughput ceiling; return
    the timing and the bytes sent."""
    store = Store(tasks.config_from_params({"source": ".", "store": f"s3://{bucket}/put-{round_no}"}, "p").store)
    store.ensure_bucket()
    blobs = [path.read_bytes() for path in sorted(files.glob("*.png"))]
    with ThreadPoolExecutor(max_workers=16) as pool:
        timing = _measure(
            lambda: list(pool.map(lambda i: store.put_bytes(f"put/{i}", blobs[i]), range(len(blobs)))), info.pid
        )
    store.delete_prefix("put/")
    return timing, sum(map(len, blobs))


def decode_cost(files: Path, variant: int) -> float:
    """CPU seconds per image of what must be decoded (one core): the CRC walk, and a full decode with a variant."""
    paths = sorted(files.glob("*.png"))[:100]
    start = time.process_time()
    for path in paths:
        data = path.read_bytes()
        images.check_png(data)
        if variant:
            with Image.open(path) as img:
                img.load()
    return (time.process_time() - start) / len(paths)


def _peer(script: str, *args: str, store_pid: int) -> Timing:
    cmd = [str(PEERS_VENV / "bin" / "python"), str(ROOT / "benchmarks" / "peers" / script), *args]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    wall, cpu = time.perf_counter(), _cpu(store_pid)
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return Timing(time.perf_counter() - wall, _cpu(store_pid) - cpu, 0.0)


def _ensure_peers() -> bool:
    if not (PEERS_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", *PEER_PINS], check=True)
    return (PEERS_VENV / "bin" / "python").exists()


PEER_RUNS = (  # (path, tool, script, format, resize)
    ("full size", "HF datasets -> parquet", "hf_parquet.py", "", ""),
    ("full size", "img2dataset -> webdataset", "img2dataset_run.py", "webdataset", "0"),
    ("full size", "img2dataset -> parquet", "img2dataset_run.py", "parquet", "0"),
    ("+256 px", "img2dataset -> webdataset", "img2dataset_run.py", "webdataset", "256"),
)


def _peer_round(files: Path, store_pid: int) -> dict[str, Timing]:
    out = BENCH_DIR / "peer-out" / str(time.time_ns())
    timings = {}
    for path, tool, script, fmt, resize in PEER_RUNS:
        dest = str(out / f"{script}-{fmt}-{resize}")
        timings[f"{path}|{tool}"] = _peer(
            script, str(files), dest, *([fmt, resize] if fmt else []), store_pid=store_pid
        )
    return timings


def _median(timings: list[Timing]) -> Timing:
    """The round with the median wall time (its CPU figures come with it)."""
    return sorted(timings, key=lambda t: t.wall)[len(timings) // 2]


def _row(path: str, tool: str, images_s: float, timing: Timing | None, floors: dict[str, float]) -> dict[str, Any]:
    return {
        "path": path,
        "tool": tool,
        "images/s": images_s,
        "client cpu ms/img": 1000 * timing.cpu / IMAGES if timing else "",
        "store cpu ms/img": 1000 * timing.store_cpu / IMAGES if timing else "",
        "x floor (own store)": images_s / floors["own"],
        "x floor (shared cores)": images_s / floors["shared"],
    }


def _floors(decode_s: float, put: Timing, put_bytes: int, written_per_image: float) -> dict[str, float]:
    """Images/s that cannot be beaten: store on machines of its own, or on these cores (costs add up)."""
    put_bytes_s = put_bytes / put.wall
    put_cpu_per_byte = (put.cpu + put.store_cpu) / put_bytes
    own = min(CORES / decode_s, put_bytes_s / written_per_image)
    shared = min(own, CORES / (decode_s + put_cpu_per_byte * written_per_image))
    return {"own": own, "shared": shared}


@dataclass
class Rounds:
    """Every round's timings: ours per path, the PUT ceiling, and each peer run (keyed ``path|tool``)."""

    ours: dict[str, list[Timing]] = field(default_factory=lambda: {path: [] for path in PATHS})
    written: dict[str, int] = field(default_factory=dict)
    puts: list[Timing] = field(default_factory=list)
    put_bytes: int = 0
    peers: dict[str, list[Timing]] = field(default_factory=dict)


def _measure_rounds(src: Path, files: Path, peers: bool) -> Rounds:
    """PUT ceiling, ours on both paths, then the peers, ``REPEAT`` times over (interleaved, so load from
    elsewhere hits all alike)."""
    rounds = Rounds()
    with LocalS3() as info:
        os.environ.update(info.env())
        Store(tasks.config_from_params({"source": ".", "store": "s3://bench-convert"}, "b").store).ensure_bucket()
        for round_no in range(REPEAT):
            put, rounds.put_bytes = measure_put(files, info, round_no)
            rounds.puts.append(put)
            for path, variant in zip(PATHS, (0, 256), strict=True):
                timing, rounds.written[path] = _ours(src, info, variant, round_no)
                rounds.ours[path].append(timing)
            for key, timing in (_peer_round(files, info.pid) if peers else {}).items():
                rounds.peers.setdefault(key, []).append(timing)
    return rounds


def _our_rows(files: Path, rounds: Rounds) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Ours and both floors per path (medians), and the figures behind them."""
    put = _median(rounds.puts)
    rows, figures = [], {}
    for path, variant in zip(PATHS, (0, 256), strict=True):
        floors = _floors(decode_cost(files, variant), put, rounds.put_bytes, rounds.written[path] / IMAGES)
        mine = _median(rounds.ours[path])
        rows.append(_row(path, "ours -> parquet + webdataset, into S3", IMAGES / mine.wall, mine, floors))
        rows.append(_row(path, "floor, store on its own machines", floors["own"], None, floors))
        rows.append(_row(path, "floor, store on these cores", floors["shared"], None, floors))
        figures[path] = {
            "ours_images_s": IMAGES / mine.wall,
            "ours_rounds_images_s": [IMAGES / t.wall for t in rounds.ours[path]],
            "bytes_written": rounds.written[path],
            **floors,
        }
    return rows, figures


def _peer_rows(rounds: Rounds, figures: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The peers' rows (medians); notes the faster peer of each path and our ratio to it in ``figures``."""
    rows = []
    for key, timings in rounds.peers.items():
        path, tool = key.split("|")
        rows.append(_row(path, tool, IMAGES / _median(timings).wall, _median(timings), figures[path]))
    for path in PATHS:
        best = max((r["images/s"] for r in rows if r["path"] == path), default=0.0)
        figures[path]["faster_peer_images_s"] = best
        figures[path]["x_faster_peer"] = figures[path]["ours_images_s"] / best if best else None
    return rows


def run() -> dict[str, Any]:
    """Measure ours, the floor and the peers side by side, rounds interleaved; return the table and figures."""
    src = _source()
    files = loose_files(src)
    rounds = _measure_rounds(src, files, os.environ.get("CXR_BENCH_PEERS", "1") != "0" and _ensure_peers())
    rows, figures = _our_rows(files, rounds)
    rows += _peer_rows(rounds, figures)
    put = _median(rounds.puts)
    notes = [
        f"{IMAGES} images of 1024x1024, {CORES} cores, {platform.processor() or platform.machine()}, median of "
        f"{REPEAT} interleaved rounds; store PUT {rounds.put_bytes / put.wall / 1e6:.0f} MB/s with "
        f"{1000 * (put.cpu + put.store_cpu) / (rounds.put_bytes / 1e6):.1f} CPU ms/MB (client + store), same run",
        *(
            f"{path}: ours = {f['x_faster_peer']:.2f}x the faster peer ({f['faster_peer_images_s']:.0f} images/s)"
            for path, f in figures.items()
            if f.get("x_faster_peer")
        ),
    ]
    return {"images": IMAGES, "figures": figures, "table": rows, "notes": notes}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
