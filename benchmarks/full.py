"""Full scale: every stage at up to all 112,120 rows, its wall time, CPU and peak RSS, and how each scales.

For each row count (``CXR_BENCH_FULL_ROWS``, default ``10000,112120``; add 40000 for a middle point) a
synthetic mirror with the real distributions (patients, follow-ups, labels, views; 12 shards at the real
boundaries) and small pixels (``CXR_BENCH_FULL_SIZE``, default 32 px, so that only the row count is large) is
cached under ``.cxr/bench/full-<rows>-<side>`` and published into a local SeaweedFS with the default settings, twice:

- **staged**, as Airflow runs it: every task in a fresh process (``discover``; ``extract`` once per archive;
  ``curate``; ``plan``; ``convert`` once per unit; ``publish``), each reporting the wall and CPU time (user +
  sys, its own and its forked workers') of the task call, and its peak RSS (VmHWM, imports included);
- **cxr run**: ``tasks.run_all`` as ``cxr run`` calls it (each stage in a child process of its own) in one fresh
  process into a fresh prefix, then the **nightly**: the same run again (same source and settings), which finds
  the inputs unchanged; its wall time as a share of the first. Its peak RSS is that of its largest process.

The table gives each stage's figures per row count (a stage of several processes: the sum of their times and
the largest peak RSS) and the scaling exponent of its wall time between consecutive row counts,
``log(t2/t1) / log(n2/n1)``, and of its CPU time (less sensitive to a busy machine): 1 is linear; above
``FLAG_EXPONENT`` the row says ``superlinear``, a bug (a peak RSS over 1 GiB is flagged too).
``CXR_BENCH_FULL_RUN_ROWS`` (default: the largest count) picks the row counts that also get the one-process run
and the nightly (``all`` for every count).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import rss_mb, run_child
from pipeline.dev.stack import LocalS3, StackInfo
from pipeline.dev.synth import SynthConfig, synthesize

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("CXR_BENCH_DIR", ROOT / ".cxr" / "bench"))
ROWS = tuple(int(n) for n in os.environ.get("CXR_BENCH_FULL_ROWS", "10000,112120").split(","))
SIDE = int(os.environ.get("CXR_BENCH_FULL_SIZE", "32"))
RUN_ROWS = os.environ.get("CXR_BENCH_FULL_RUN_ROWS", str(max(ROWS)))
BUCKET = "bench-full"
STAGES = ("discover", "extract", "curate", "plan", "convert", "publish")
FLAG_EXPONENT = 1.15
GIB_MB = 1024  # 1 GiB in the MB (2**20 bytes) that rss_mb reports


def _source(rows: int) -> Path:
    src = BENCH_DIR / f"full-{rows}-{SIDE}"
    if not (src / "Data_Entry_2017.csv").exists():
        synthesize(SynthConfig(dest=src, images=rows, seed=16, image_size=SIDE, overwrite=True))
    return src


def _cpu_s() -> float:
    """CPU seconds (user + sys) of this process and of its children that have exited."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _task(stage: str) -> Callable[..., Any]:
    from pipeline.run import tasks

    return {
        "discover": tasks.discover,
        "extract": tasks.extract_shard,
        "curate": tasks.curate_metadata,
        "plan": tasks.plan_release,
        "convert": tasks.convert_unit,
        "publish": tasks.publish_release,
        "run": functools.partial(tasks.run_all, isolate=True),  # as `cxr run` calls it: each stage in a child
    }[stage]


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: run one task (``spec['stage']`` with ``spec['args']``); report its figures."""
    from pipeline.run import tasks

    cfg = tasks.config_from_params(spec["params"], run_id=spec["run_id"])
    task = _task(spec["stage"])
    started, cpu = time.perf_counter(), _cpu_s()
    result = task(cfg, *spec["args"])
    return {
        "wall": time.perf_counter() - started,
        "cpu": _cpu_s() - cpu,
        "rss": rss_mb("VmHWM"),
        "workers_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "result": result,
    }


def _child(stage: str, params: dict[str, Any], run_id: str, args: list[Any], info: StackInfo) -> dict[str, Any]:
    """Run one task in a fresh process (the spec goes through a file: a plan's units can be many)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=BENCH_DIR, delete=False) as f:
        json.dump({"stage": stage, "params": params, "run_id": run_id, "args": args}, f)
    try:
        return run_child("benchmarks.full", ["--child", f.name], info.env(), f"the {stage} task")
    finally:
        Path(f.name).unlink()


def _fold(measured: list[dict[str, Any]]) -> dict[str, float]:
    """The figures of a stage's processes: times summed, the largest peak RSS."""
    return {
        "processes": len(measured),
        "wall": sum(m["wall"] for m in measured),
        "cpu": sum(m["cpu"] for m in measured),
        "rss": max(m["rss"] for m in measured),
        "workers_rss": max(m["workers_rss"] for m in measured),
    }


def _staged(src: Path, rows: int, info: StackInfo) -> dict[str, dict[str, float]]:
    """Every task of one release in its own process, as Airflow runs them; the figures per stage."""
    params = {"source": str(src), "store": f"s3://{BUCKET}/staged-{rows}-{time.time_ns()}"}
    run_id = f"bench-full-{rows}"
    found = _child("discover", params, run_id, [], info)
    extracted = [_child("extract", params, run_id, [shard], info) for shard in found["result"]]
    curated = _child("curate", params, run_id, [], info)
    shard_results = [m["result"] for m in extracted]
    planned = _child("plan", params, run_id, [shard_results, curated["result"]], info)
    converted = [_child("convert", params, run_id, [unit], info) for unit in planned["result"]]
    published = _child("publish", params, run_id, [], info)
    if not published["result"].get("published"):
        raise RuntimeError(f"the staged run of {rows} rows published nothing: {published['result']}")
    stages = dict(zip(STAGES, ([found], extracted, [curated], [planned], converted, [published]), strict=True))
    return {stage: _fold(measured) for stage, measured in stages.items()}


def _one_process(src: Path, rows: int, info: StackInfo) -> dict[str, dict[str, float]]:
    """``cxr run`` in one process, then the unchanged nightly rerun (same source, settings and prefix)."""
    params = {"source": str(src), "store": f"s3://{BUCKET}/run-{rows}-{time.time_ns()}"}
    first = _child("run", params, f"bench-full-run-{rows}", [], info)
    again = _child("run", params, f"bench-full-rerun-{rows}", [], info)
    if not first["result"].get("published") or again["result"].get("published"):
        raise RuntimeError(f"at {rows} rows the run should publish and its rerun not: {first['result']}, {again}")
    return {"cxr run": _whole_run(first), "nightly rerun": _whole_run(again)}


def _whole_run(measured: dict[str, Any]) -> dict[str, float]:
    """A ``cxr run``'s figures: its peak RSS is its largest process's, the main one or a stage's child."""
    figures = _fold([measured])
    return figures | {"rss": max(figures["rss"], figures["workers_rss"])}


def _exponent(t1: float, t2: float, n1: int, n2: int) -> float | None:
    return math.log(t2 / t1) / math.log(n2 / n1) if t1 > 0 and t2 > 0 and n2 != n1 else None


def _rows(measured: dict[int, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per stage and row count, with the exponent of its wall time from the previous row count."""
    table = []
    names = [*STAGES, "cxr run", "nightly rerun"]
    for stage in names:
        previous: tuple[int, float, float] | None = None
        for rows in sorted(measured):
            figures = measured[rows].get(stage)
            if figures is None:
                continue
            exponent = _exponent(previous[1], figures["wall"], previous[0], rows) if previous else None
            cpu_exponent = _exponent(previous[2], figures["cpu"], previous[0], rows) if previous else None
            table.append(
                {
                    "stage": stage,
                    "rows": rows,
                    "processes": int(figures["processes"]),
                    "wall s": figures["wall"],
                    "cpu s": figures["cpu"],
                    "peak RSS MB": figures["rss"],
                    "workers RSS MB": figures["workers_rss"],
                    "exponent": "" if exponent is None else f"{exponent:.2f}",
                    "cpu exponent": "" if cpu_exponent is None else f"{cpu_exponent:.2f}",
                    "flag": _flag(exponent, cpu_exponent, figures["rss"]),
                }
            )
            previous = (rows, figures["wall"], figures["cpu"])
    return table


def _flag(exponent: float | None, cpu_exponent: float | None, rss: float) -> str:
    flags = []
    if exponent is not None and exponent > FLAG_EXPONENT:
        flags.append("superlinear wall")
    if cpu_exponent is not None and cpu_exponent > FLAG_EXPONENT:
        flags.append("superlinear CPU")
    if rss > GIB_MB:
        flags.append("> 1 GiB")
    return ", ".join(flags)


def _run_rows() -> set[int]:
    if RUN_ROWS == "all":
        return set(ROWS)
    return {int(n) for n in RUN_ROWS.split(",") if n}


def run() -> dict[str, Any]:
    """Publish each row count staged (and in one process where asked); tabulate the stages and the nightly."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    measured: dict[int, dict[str, dict[str, float]]] = {}
    with LocalS3() as info:
        os.environ.update(info.env())
        from pipeline.run import tasks
        from pipeline.store.storage import Store

        Store(tasks.config_from_params({"source": ".", "store": f"s3://{BUCKET}"}, run_id="x").store).ensure_bucket()
        for rows in sorted(ROWS):
            src = _source(rows)
            measured[rows] = _staged(src, rows, info)
            if rows in _run_rows():
                measured[rows] |= _one_process(src, rows, info)
    table = _rows(measured)
    notes = [f"{SIDE} px synthetic images, default settings, {os.cpu_count()} cores; rows {', '.join(map(str, ROWS))}"]
    for rows, stages in sorted(measured.items()):
        if "cxr run" in stages:
            share = stages["nightly rerun"]["wall"] / stages["cxr run"]["wall"]
            notes.append(
                f"{rows} rows: cxr run {stages['cxr run']['wall']:.1f} s, peak RSS {stages['cxr run']['rss']:.0f} MB; "
                f"unchanged nightly {stages['nightly rerun']['wall']:.1f} s = {100 * share:.1f}% of the run"
            )
    worst = max(table, key=lambda r: r["peak RSS MB"])
    notes.append(f"largest peak RSS: {worst['stage']} at {worst['rows']} rows, {worst['peak RSS MB']:.0f} MB")
    return {"side": SIDE, "rows": list(ROWS), "measured": measured, "table": table, "notes": notes}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help="(internal) a JSON spec file: run one task and print its figures")
    args = parser.parse_args()
    print(json.dumps(child_main(json.loads(Path(args.child).read_text())) if args.child else run()))
