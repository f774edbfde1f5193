"""Convert memory: peak RSS of the convert stage for 1k and for 20k images, which should stay flat.

For each size, a synthetic mirror (cached under ``.cxr/bench/memory-<N>-<side>``) is extracted and planned
into a local SeaweedFS (not measured), then a fresh child process converts every unit of the release one
after the other, as ``cxr run`` does, and reports its peak resident set (VmHWM) and its RSS after imports.
The child also samples its RSS every 0.2 s: the peak within each quarter of the run shows whether memory
plateaus or climbs with the images converted so far. (Decoding workers, forked per unit when the variant is
on, are separate processes of about the same size after the fork.)

Half-size images (``CXR_BENCH_MEMORY_SIDE``, default 512 px) keep the 20k run to a few minutes while 1k
of them still fill every bounded buffer (a 32 MB row group, 16 MB upload parts); they are also the harder
case for flatness, as a unit (cut at ``shard_target_bytes``) holds more images. ``CXR_BENCH_MEMORY_IMAGES``
(default ``1000,20000``) sets the sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import rss_mb, run_child
from pipeline.dev.stack import LocalS3, StackInfo
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.run import tasks
from pipeline.store.storage import Store

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("CXR_BENCH_DIR", ROOT / ".cxr" / "bench"))
SIZES = tuple(int(n) for n in os.environ.get("CXR_BENCH_MEMORY_IMAGES", "1000,20000").split(","))
SIDE = int(os.environ.get("CXR_BENCH_MEMORY_SIDE", "512"))


def _source(images: int) -> Path:
    src = BENCH_DIR / f"memory-{images}-{SIDE}"
    if not (src / "Data_Entry_2017.csv").exists():
        synthesize(SynthConfig(dest=src, images=images, seed=11, image_size=SIDE, overwrite=True))
    return src


def _planned(src: Path, images: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Extract and plan ``src`` into a fresh prefix; return the params and the units to convert."""
    params = {"source": str(src), "store": f"s3://bench-memory/n{images}-{time.time_ns()}", "min_shards": 1}
    cfg = tasks.config_from_params(params, run_id=f"memory-{images}")
    Store(cfg.store).ensure_bucket()
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    return params, tasks.plan_release(cfg, shards, tasks.curate_metadata(cfg))


def _child(params: dict[str, Any], units: list[dict[str, Any]], info: StackInfo) -> dict[str, Any]:
    spec = json.dumps({"params": params, "units": units})
    return run_child("benchmarks.convert_memory", ["--child", spec], info.env(), "the convert child")


def _sample_rss(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(0.2):
        samples.append(rss_mb("VmRSS"))


def _quarters(samples: list[float]) -> list[float]:
    """The peak of each quarter of the samples."""
    cut = max(1, len(samples) // 4)
    return [max(samples[i : i + cut]) for i in range(0, cut * 4, cut) if samples[i : i + cut]]


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child: convert every unit in this process; report images, seconds and RSS."""
    cfg = tasks.config_from_params(spec["params"], run_id=f"memory-{sum(u['images'] for u in spec['units'])}")
    Store(cfg.store).exists("warm-up")  # imports and the client, before the baseline
    before = rss_mb("VmRSS")
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(samples, stop), daemon=True)
    started = time.perf_counter()
    sampler.start()
    converted = sum(tasks.convert_unit(cfg, unit)["images"] for unit in spec["units"])
    stop.set()
    sampler.join()
    return {
        "images": converted,
        "units": len(spec["units"]),
        "largest_unit": max(u["images"] for u in spec["units"]),
        "seconds": time.perf_counter() - started,
        "rss_after_imports_mb": before,
        "rss_peak_mb": rss_mb("VmHWM"),
        "rss_by_quarter_mb": [round(q) for q in _quarters(samples)],
    }


def run() -> dict[str, Any]:
    """Convert each size in a fresh child and tabulate its peak RSS."""
    rows = []
    with LocalS3() as info:
        os.environ.update(info.env())
        for images in SIZES:
            params, units = _planned(_source(images), images)
            measured = _child(params, units, info)
            rows.append({"images": images, **measured, "images/s": measured["images"] / measured["seconds"]})
    growth = rows[-1]["rss_peak_mb"] / rows[0]["rss_peak_mb"]
    notes = [
        f"{SIDE} px synthetic images, default settings (256 px variant on); peak RSS {growth:.2f}x from "
        f"{SIZES[0]} to {SIZES[-1]} images"
    ]
    return {"side": SIDE, "table": rows, "growth": growth, "notes": notes}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help="(internal) JSON with params and units; convert them and print figures")
    args = parser.parse_args()
    print(json.dumps(child_main(json.loads(args.child)) if args.child else run()))
