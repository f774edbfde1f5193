"""Benchmarks of the pipeline's stages, run with ``python -m benchmarks [NAME ...]`` (``make bench``).

Each benchmark is a module exposing ``run() -> dict``; the dict holds whatever the benchmark measured plus
a ``"table"`` entry: a list of rows (dicts with the same keys) that ``__main__`` prints. Results are written
to ``benchmarks/results/<name>.json``. To add one, write the module and register it in ``BENCHMARKS``.

Benchmarks compare against a ceiling measured in the same run (e.g. the store's raw PUT throughput), so
their ratios mean something on any machine; no test asserts timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS: dict[str, str] = {
    "ingest": "benchmarks.ingest",
    "convert": "benchmarks.convert",
    "convert-memory": "benchmarks.convert_memory",
    "read": "benchmarks.read",
    "full": "benchmarks.full",
    "e2e": "benchmarks.e2e",
}


def run_child(module: str, args: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process from the repository root (same start for every
    measurement, its own peak RSS); return the JSON object on the last line of its output."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rss_mb(field: str = "VmHWM") -> float:
    """This process's resident set in MB from ``/proc/self/status``: ``VmHWM`` (peak) or ``VmRSS`` (now).

    ``ru_maxrss`` would not do for the peak: it includes the parent's before ``exec``.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")
