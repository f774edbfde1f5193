"""``cxr``: the command line of the NIH ChestX-ray14 release pipeline.

Commands: ``run`` (every stage, no Airflow), ``synth`` (a synthetic mirror), ``stack up|env|down``
(a local S3 endpoint), ``validate`` (metadata files), ``demo`` (the whole road through Airflow)
and ``ui`` (the Airflow UI on loopback). Progress bars live here, and only here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from pipeline import cli_releases, progress
from pipeline.errors import PipelineError


class TerminalProgress:
    """Draws one live progress line on a terminal (stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: progress.ProgressEvent) -> None:
        if event.total:
            filled = int(30 * min(event.done, event.total) / event.total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {event.done}/{event.total}"
        else:
            bar = f"{event.done}"
        self.stream.write(f"\r{event.stage:<28.28} {bar} {event.rate:7.1f}/s")
        if event.finished:
            self.stream.write("\n")
        self.stream.flush()


def _setup_output(verbose: bool) -> None:
    level = logging.INFO if verbose or not sys.stderr.isatty() else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if sys.stderr.isatty():
        progress.set_listener(TerminalProgress(sys.stderr))


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline import tasks

    params = {
        "source": args.source,
        "store": args.store,
        "release": args.release,
        "split_mode": args.split_mode,
        "seed": args.seed,
        "shards": args.shards,
        "force": args.force,
        "data_entry": args.data_entry,
        "checksums": args.checksums,
        "variant_size": args.variant_size,
        "shard_size_mb": args.shard_size_mb,
    }
    cfg = tasks.config_from_params(params, run_id=args.run_id or tasks.new_run_id())
    summary = tasks.run_all(cfg)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    state = "published" if summary["published"] else "unchanged (nothing new published)"
    print(f"release {summary['version']}: {state}")
    for split, count in summary["counts"].items():
        print(f"  {split:<5} {count:>7} images")
    print(f"  quarantined {summary['quarantined']}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from pipeline.synth import SynthConfig, synthesize

    config = SynthConfig(
        dest=Path(args.dest),
        images=args.images,
        seed=args.seed,
        image_size=args.image_size,
        archive=args.archive,
        quirks=args.quirks,
    )
    counter = progress.Progress("synth", args.images, logging.getLogger("pipeline.synth"))
    summary = synthesize(config, progress=counter.advance)
    counter.finish()
    print(
        f"wrote {summary.images} images of {summary.patients} patients in {len(summary.shards)} archives to {args.dest}"
    )
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from pipeline import stack

    state_dir = Path(args.dir)
    if args.action == "up":
        info = stack.stack_up(state_dir, s3_port=args.port)
        print(info.export_lines())
        print(
            f"# S3 endpoint {info.endpoint_url} (data in {state_dir}); stop it with: cxr stack down --dir {state_dir}",
            file=sys.stderr,
        )
        return 0
    if args.action == "env":
        status = stack.stack_status(state_dir)
        if status is None:
            print(f"no stack running in {state_dir}; start one with: cxr stack up --dir {state_dir}", file=sys.stderr)
            return 1
        print(status.export_lines())
        return 0
    stopped = stack.stack_down(state_dir)
    print("stopped" if stopped else f"no stack was running in {state_dir}", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.validate import validate_main

    return validate_main([*args.files, *(["--json"] if args.json else [])])


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo

    return demo.run_demo(Path(args.dir), images=args.images)


def cmd_ui(args: argparse.Namespace) -> int:
    from pipeline import demo

    return demo.run_ui(Path(args.dir), port=args.port)


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run every stage in this process and publish a release")
    p.add_argument(
        "--source",
        required=True,
        help="where the NIH archives and CSVs are: a directory, s3://BUCKET/PREFIX or http(s)://URL",
    )
    p.add_argument("--store", required=True, help="s3://BUCKET[/PREFIX] (endpoint and keys from AWS_* variables)")
    p.add_argument("--release", help="release version (default: today's date, YYYY.MM.DD)")
    p.add_argument("--split-mode", default="auto", choices=["auto", "official", "patient-hash"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shards", nargs="+", help="only these archives (names or numbers)")
    p.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    p.add_argument("--data-entry", help="metadata file when several are present: 2017, v2020 (default) or a file name")
    p.add_argument("--checksums", help="md5 list to verify against (path, URI or file name in the source)")
    p.add_argument(
        "--variant-size",
        type=int,
        default=256,
        help="long side of the downsized PNG copy (0 = none)",
    )
    p.add_argument(
        "--shard-size-mb",
        type=int,
        default=1024,
        help="target size of each WebDataset shard (and conversion unit) in MB",
    )
    p.add_argument("--run-id", help="resume this run id (default: a new one)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_run)


def _add_synth(sub: Any) -> None:
    p = sub.add_parser("synth", help="write a deterministic synthetic mirror of the dataset")
    p.add_argument("dest")
    p.add_argument("--images", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--archive", choices=["zip", "tar.gz"], default="zip")
    p.add_argument("--quirks", action="store_true", help="add the real dataset's quirks")
    p.set_defaults(func=cmd_synth)


def _add_stack(sub: Any) -> None:
    p = sub.add_parser("stack", help="a local S3 endpoint (SeaweedFS) on 127.0.0.1")
    p.add_argument("action", choices=["up", "env", "down"])
    p.add_argument("--dir", default=".cxr/stack", help="where the stack keeps its data and state")
    p.add_argument("--port", type=int, help="S3 port (default: a free one)")
    p.set_defaults(func=cmd_stack)


def build_parser() -> argparse.ArgumentParser:
    """The ``cxr`` argument parser."""
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every stage's progress")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_synth(sub)
    _add_stack(sub)
    cli_releases.add_parsers(sub)
    p = sub.add_parser("validate", help="validate metadata files (exit 0 ok, 1 blocking failure, 2 unreadable)")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("demo", help="synthetic mirror + local S3 + the DAG through Airflow")
    p.add_argument("--dir", default=".cxr", help="workspace for the demo's data")
    p.add_argument("--images", type=int, default=240)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("ui", help="the Airflow UI on 127.0.0.1 against the demo's store")
    p.add_argument("--dir", default=".cxr")
    p.add_argument("--port", type=int, default=8780, help="API server port (the log server takes PORT+1)")
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cxr`` console script."""
    args = build_parser().parse_args(argv)
    _setup_output(args.verbose)
    try:
        code: int = args.func(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
