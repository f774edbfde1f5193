"""Benchmarks of the pipeline's stages, run with ``python -m benchmarks [NAME ...]`` (``make bench``).

Each benchmark is a module exposing ``run() -> dict``; the dict holds whatever the benchmark measured plus
a ``"table"`` entry: a list of rows (dicts with the same keys) that ``__main__`` prints. Results are written
to ``benchmarks/results/<name>.json``. To add one, write the module and register it in ``BENCHMARKS``.

Benchmarks compare against a ceiling measured in the same run (e.g. the store's raw PUT throughput), so
their ratios mean something on any machine; no test asserts timings.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "ingest": "benchmarks.ingest",
    "convert": "benchmarks.convert",
}
