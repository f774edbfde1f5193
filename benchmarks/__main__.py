"""Run the registered benchmarks, print a table per benchmark and write ``benchmarks/results/<name>.json``."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS

RESULTS = Path(__file__).resolve().parent / "results"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as an aligned text table (floats with 2 decimals)."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [
        [f"{row.get(k, ''):.2f}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
        for row in rows
    ]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cell, widths, strict=True)))
        for cell in cells
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    RESULTS.mkdir(exist_ok=True)
    for name in args.names or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        result: dict[str, Any] = importlib.import_module(BENCHMARKS[name]).run()
        print(format_table(result.get("table", [])))
        for note in result.get("notes", []):
            print(f"  {note}")
        path = RESULTS / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"  (written to {path})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
