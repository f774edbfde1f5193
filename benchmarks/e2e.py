"""End to end: ``cxr run`` on full-size images next to the machine's floor, measured in one run.

``tasks.run_all`` (what ``cxr run`` calls: extract, curate, plan, convert, publish) runs in a fresh process
(:func:`benchmarks.run_child`) with the default settings (the 256 px variant on) into a fresh prefix of a local
SeaweedFS, on synthetic 1024 px images (``pipeline.dev.synth``, cached under ``.cxr/bench/e2e-<N>``), at two sizes
(``CXR_BENCH_E2E_IMAGES``, default ``200,1000``) so that start-up cancels: the marginal throughput is
``(n2 - n1) / (t2 - t1)``. Each size runs ``CXR_BENCH_REPEAT`` (default 3) rounds, interleaved, and the fastest
round of each size (and of the PUT ceiling) counts: on a shared machine, load from elsewhere only adds time.

The floor per image is measured in the same run with :mod:`benchmarks.convert`'s functions: the CPU of what must
be decoded (the CRC walk and a full decode, one core) over the cores, plus the bytes the run writes per image
(marginal, from the store's listing: raw zone and release) over the store's PUT throughput (16 concurrent PUTs of
the same images). Both are CPU-bound on these cores (the store shares them), so the two times add up. The table
gives each stage's wall time per size too (the child times each stage call of ``run_all``), and each stage's CPU
per image (marginal, between the two sizes): of the run's processes (the main one and its decode workers) and of
the store; from those, what the whole dataset (``FULL_IMAGES``) would take with more cores, the store on the same
machine or on machines of its own.
``CXR_BENCH_E2E_PROFILE=DIR`` writes a cProfile of each run's main process there (forked decode workers are not in it).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import run_child
from benchmarks.convert import BENCH_DIR, CORES, REPEAT, decode_cost, loose_files, measure_put, store_cpu
from pipeline.dev.stack import LocalS3
from pipeline.dev.synth import SynthConfig, synthesize
from pipeline.store.storage import Store

SIZES = tuple(int(n) for n in os.environ.get("CXR_BENCH_E2E_IMAGES", "200,1000").split(","))
BUCKET = "bench-e2e"
VARIANT = 256  # the default variant_size (pipeline.options)
#: The stage calls of ``tasks.run_all`` that the child times (``extract_shard`` once per archive, ``convert_unit``
#: once per unit; ``discover`` also hashes the metadata files).
STAGES = ("discover", "extract_shard", "curate_metadata", "plan_or_preview", "convert_unit", "publish_release")
FULL_IMAGES = 112_120
PROJECTED_CORES = (2, 16)


def _tree_cpu() -> float:
    """CPU seconds so far of this process (all its threads) and of its live children (the decode workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            children.update(int(pid) for pid in (task / "children").read_text().split())
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return own.ru_utime + own.ru_stime + sum(_proc_cpu(pid) for pid in children)


def _proc_cpu(pid: int) -> float:
    try:
        return store_cpu(pid)  # the same /proc/<pid>/stat fields for any process
    except FileNotFoundError:  # it ended meanwhile
        return 0.0


def _source(images: int) -> Path:
    src = BENCH_DIR / f"e2e-{images}"
    if not (src / "Data_Entry_2017.csv").exists():
        synthesize(SynthConfig(dest=src, images=images, seed=16, overwrite=True))
    return src


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: ``tasks.run_all`` on ``spec['source']`` into ``spec['store']``; its wall time and each
    stage's (summed over its calls)."""
    from pipeline.run import tasks

    stages = dict.fromkeys(STAGES, 0.0)
    cpu = {name: [0.0, 0.0] for name in STAGES}  # run's processes, store

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            start, own, store = time.perf_counter(), _tree_cpu(), store_cpu(spec["store_pid"])
            try:
                return fn(*args, **kwargs)
            finally:
                stages[name] += time.perf_counter() - start
                cpu[name][0] += _tree_cpu() - own
                cpu[name][1] += store_cpu(spec["store_pid"]) - store

        return call

    for name in STAGES:  # run_all looks each one up in the module when it calls it
        setattr(tasks, name, timed(name, getattr(tasks, name)))
    cfg = tasks.config_from_params({"source": spec["source"], "store": spec["store"]}, run_id=spec["run_id"])
    profile = cProfile.Profile() if spec.get("profile") else None
    start = time.perf_counter()
    if profile is not None:
        summary = profile.runcall(tasks.run_all, cfg)
        profile.dump_stats(spec["profile"])
    else:
        summary = tasks.run_all(cfg)
    wall = time.perf_counter() - start
    if not summary.get("published"):
        raise RuntimeError(f"the run published nothing: {summary}")
    return {"wall_s": wall, "stages_s": stages, "cpu_s": cpu, "images": sum(summary["counts"].values())}


def _run(images: int, round_no: int, env: dict[str, str], store_pid: int) -> dict[str, Any]:
    """One ``cxr run`` of ``images`` images into a fresh prefix; its figures, the store's CPU and bytes written."""
    prefix = f"n{images}-r{round_no}"
    spec: dict[str, Any] = {
        "source": str(_source(images)),
        "store": f"s3://{BUCKET}/{prefix}",
        "run_id": f"bench-e2e-{prefix}-{time.time_ns()}",
        "store_pid": store_pid,
    }
    if os.environ.get("CXR_BENCH_E2E_PROFILE"):
        spec["profile"] = str(Path(os.environ["CXR_BENCH_E2E_PROFILE"]) / f"{prefix}.prof")
    before = store_cpu(store_pid)
    result = run_child("benchmarks.e2e", ["--child", json.dumps(spec)], env, f"cxr run of {images} images")
    store = Store(_store_config(spec["store"]))
    written = sum(info.size for info in store.list(""))
    store.delete_prefix("")
    return result | {"store_cpu_s": store_cpu(store_pid) - before, "bytes": written}


def _store_config(uri: str) -> Any:
    from pipeline.run import tasks

    return tasks.config_from_params({"source": ".", "store": uri}, "e2e").store


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest round: on a shared machine, load from elsewhere only ever adds time."""
    return min(runs, key=lambda r: r["wall_s"])


def _table(runs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for images, measured in runs.items():
        mine = _best(measured)
        rows.append(
            {
                "images": images,
                "wall s": mine["wall_s"],
                "images/s": images / mine["wall_s"],
                **{f"{name.split('_')[0]} s": mine["stages_s"][name] for name in STAGES},
                "MB written": mine["bytes"] / 1e6,
                "store cpu s": mine["store_cpu_s"],
            }
        )
    return rows


def run() -> dict[str, Any]:
    """Both sizes, interleaved rounds, the PUT ceiling and the decode cost; the marginal throughput and its floor."""
    small, large = min(SIZES), max(SIZES)
    files = loose_files(_source(large), large, name="e2e")
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in (small, large)}
    puts = []
    with LocalS3() as info:
        env = info.env()
        os.environ.update(env)
        Store(_store_config(f"s3://{BUCKET}")).ensure_bucket()
        for round_no in range(REPEAT):
            puts.append(measure_put(files, info, round_no, BUCKET))
            for images in (small, large):
                runs[images].append(_run(images, round_no, env, info.pid))
    put, put_bytes = min(puts, key=lambda p: p[0].wall)
    decode_s = decode_cost(files, VARIANT)
    one, two = _best(runs[small]), _best(runs[large])
    marginal = (large - small) / (two["wall_s"] - one["wall_s"])
    written = (two["bytes"] - one["bytes"]) / (large - small)
    floor_s = decode_s / CORES + written / (put_bytes / put.wall)
    figures = {
        "marginal_images_s": marginal,
        "floor_images_s": 1 / floor_s,
        "x_floor": marginal * floor_s,
        "decode_ms_per_image": 1000 * decode_s,
        "written_bytes_per_image": written,
        "put_mb_s": put_bytes / put.wall / 1e6,
        "rounds_wall_s": {n: [r["wall_s"] for r in rs] for n, rs in runs.items()},
    }
    notes = [
        f"{CORES} cores, {platform.processor() or platform.machine()}, 1024 px images, variant {VARIANT} px, best "
        f"of {REPEAT} interleaved rounds",
        f"marginal {marginal:.1f} images/s; floor {1 / floor_s:.1f} images/s = decode {1000 * decode_s:.1f} ms over "
        f"{CORES} cores + {written / 1e6:.2f} MB written per image at the PUT rate {put_bytes / put.wall / 1e6:.0f} "
        f"MB/s; ratio {marginal * floor_s:.2f}x the floor",
    ]
    figures |= _per_stage(one, two, large - small)
    figures |= _projection(figures, one["wall_s"] - small / marginal, 1 / marginal)
    notes += _stage_notes(figures)
    return {"sizes": [small, large], "figures": figures, "table": _table(runs), "notes": notes}


def _per_stage(one: dict[str, Any], two: dict[str, Any], more: int) -> dict[str, Any]:
    """Each stage's marginal CPU per image (ms): the run's processes and the store's."""
    per_image = {
        name.split("_")[0]: {
            "client_ms": 1000 * (two["cpu_s"][name][0] - one["cpu_s"][name][0]) / more,
            "store_ms": 1000 * (two["cpu_s"][name][1] - one["cpu_s"][name][1]) / more,
        }
        for name in STAGES
    }
    return {"cpu_ms_per_image": per_image}


def _projection(figures: dict[str, Any], fixed_s: float, wall_per_image_s: float) -> dict[str, Any]:
    """The whole dataset's run time by the measured CPU per image, at the efficiency measured here (the share of
    the cores' time the run's processes and the store kept busy), with more cores and with the store elsewhere."""
    stages = figures["cpu_ms_per_image"].values()
    client_s = sum(s["client_ms"] for s in stages) / 1000
    store_s = sum(s["store_ms"] for s in stages) / 1000
    busy = (client_s + store_s) / (CORES * wall_per_image_s)
    projected = {
        f"{cores}_cores_{where}": fixed_s + FULL_IMAGES * cpu / (cores * busy)
        for cores in PROJECTED_CORES
        for where, cpu in (("store_shared", client_s + store_s), ("store_elsewhere", client_s))
    }
    return {"fixed_s": fixed_s, "busy_share": busy, "projected_full_s": projected}


def _stage_notes(figures: dict[str, Any]) -> list[str]:
    parts = ", ".join(
        f"{name} {v['client_ms']:.1f} + {v['store_ms']:.1f}"
        for name, v in figures["cpu_ms_per_image"].items()
        if v["client_ms"] + v["store_ms"] >= 0.05
    )
    projected = ", ".join(f"{k.replace('_', ' ')} {v / 60:.0f} min" for k, v in figures["projected_full_s"].items())
    return [
        f"CPU ms per image, run + store: {parts}; cores busy {100 * figures['busy_share']:.0f}%",
        f"{FULL_IMAGES:,} full-size images, projected by that CPU: {projected}",
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e")
    parser.add_argument("--child", help="(internal) run one cxr run from this JSON spec and print its figures")
    args = parser.parse_args()
    print(json.dumps(child_main(json.loads(args.child)) if args.child else run()))
