"""``cxr``: the command line of the NIH ChestX-ray14 release pipeline.

Commands: ``run`` (every stage, no Airflow), ``synth`` (a synthetic mirror), ``stack up|env|down``
(a local S3 endpoint), ``validate`` (metadata files), ``demo`` (the whole road through Airflow)
and ``ui`` (the Airflow UI on loopback). Progress bars live here, and only here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from pipeline import progress
from pipeline.cli import releases as cli_releases
from pipeline.errors import (
    LocalDiskError,
    PipelineError,
    StoreAccessError,
    StoreNotFoundError,
    UsageError,
    local_disk_error,
)

#: Exit codes of every ``cxr`` command (README, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # the run or check failed: bad data, validation, conflict, mismatch, store unavailable after retries
EXIT_USAGE = 2  # bad arguments: options, release names, store locations, bucket names, endpoint URL
EXIT_STORE = 3  # the store refused the keys (access denied, unknown key, wrong secret) or lacks the bucket (or object)
EXIT_LOCAL_DISK = 4  # this machine's disk refused a write: $TMPDIR (or a local file) full, over quota or read-only
EXIT_INTERNAL = 70  # a bug (sysexits' EX_SOFTWARE): one line here, the traceback in a file
EXIT_INTERRUPTED = 130
#: Error kind -> exit code; the first kind the error is an instance of wins.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, EXIT_USAGE),
    (StoreAccessError, EXIT_STORE),
    (StoreNotFoundError, EXIT_STORE),
    (LocalDiskError, EXIT_LOCAL_DISK),
    (PipelineError, EXIT_FAILED),
    (FileExistsError, EXIT_USAGE),  # `cxr synth` into a directory that is not empty
)
#: Modules whose plain ``ValueError`` is about an argument or setting: the command line, settings, connections,
#: run parameters, ``synth``, the local stack and Airflow helpers. Raised anywhere else, a bare ``ValueError`` is a
#: bug (errors about the input are :class:`PipelineError` kinds).
USAGE_MODULES = frozenset(
    {
        "pipeline.cli.commands",
        "pipeline.cli.releases",
        "pipeline.config",
        "pipeline.run.connections",
        "pipeline.run.tasks",
        "pipeline.dev.synth",
        "pipeline.dev.stack.info",
        "pipeline.dev.airflow_local",
    }
)
#: Where the traceback of an internal error is written (default: the temporary directory).
LOG_DIR_ENV = "CXR_LOG_DIR"


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
    from pipeline.plan.crosscheck import accounting_lines
    from pipeline.run import tasks

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
    print("\n".join(f"  {line}" for line in accounting_lines(summary)))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from pipeline.dev.synth import SynthConfig, synthesize

    config = SynthConfig(
        dest=Path(args.dest),
        images=args.images,
        seed=args.seed,
        image_size=args.image_size,
        archive=args.archive,
        quirks=args.quirks,
    )
    counter = progress.Progress("synth", args.images, logging.getLogger("pipeline.dev.synth"))
    summary = synthesize(config, progress=counter.advance)
    counter.finish()
    print(
        f"wrote {summary.images} images of {summary.patients} patients in {len(summary.shards)} archives to {args.dest}"
    )
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from pipeline.dev import stack

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
    from pipeline.curate.validate import validate_main

    return validate_main([*args.files, *(["--json"] if args.json else [])])


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.dev import demo

    return demo.run_demo(Path(args.dir), images=args.images)


def cmd_ui(args: argparse.Namespace) -> int:
    from pipeline.dev import demo

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


def _raised_in(tb: TracebackType | None) -> str:
    """The module of the innermost ``pipeline`` frame of a traceback ("" when none is)."""
    module = ""
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        if name == "pipeline" or name.startswith("pipeline."):
            module = name
        tb = tb.tb_next
    return module


def exit_code(exc: BaseException) -> int | None:
    """The exit code of an error a user can cause (:data:`EXIT_CODES`); None for a bug."""
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, ValueError) and _raised_in(exc.__traceback__) in USAGE_MODULES:
        return EXIT_USAGE
    if isinstance(exc, OSError) and local_disk_error(exc, "writing") is not None:
        return EXIT_LOCAL_DISK
    if isinstance(exc, OSError) and exc.filename is not None:  # a local path that is missing or not ours to use
        return EXIT_FAILED
    return None


def _user_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
        disk = local_disk_error(exc, "writing a local file")
        if disk is not None:
            return str(disk)
        return f"{exc.strerror or exc}: {exc.filename}; check that it exists and that this user may use it"
    return str(exc)


def _write_traceback(exc: BaseException) -> str:
    """Write the full traceback of ``exc`` to a log file; return where (or why it could not be written)."""
    folder = os.environ.get(LOG_DIR_ENV) or tempfile.gettempdir()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    try:
        fd, path = tempfile.mkstemp(prefix=f"cxr-traceback-{stamp}-", suffix=".log", dir=folder)
        with os.fdopen(fd, "w") as out:
            out.write(f"cxr {' '.join(sys.argv[1:])}\n")
            traceback.print_exception(exc, file=out)
    except OSError as err:
        return f"the traceback could not be written to {folder} ({err.strerror or err}); rerun with -v to see it"
    return f"the traceback is in {path}"


def report_error(exc: BaseException, verbose: bool = False) -> int:
    """Print ``exc`` as one ``error:`` line on stderr (its further lines, if any, below it); return its exit code.

    An error a user can cause shows its message only. Anything else is a bug: one line naming it and the log file
    its traceback was written to (printed too with ``-v``), exit :data:`EXIT_INTERNAL`.
    """
    code = exit_code(exc)
    if code is not None:
        print(f"error: {_user_message(exc)}", file=sys.stderr)
        return code
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    first = (str(exc).strip().splitlines() or [""])[0][:500]
    print(
        f"error: internal error (a bug in cxr, not a problem with your input): {type(exc).__name__}: {first}; "
        f"{_write_traceback(exc)}; please report it with that file",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cxr`` console script: exit codes :data:`EXIT_CODES`, no traceback for user errors."""
    args = build_parser().parse_args(argv)
    _setup_output(args.verbose)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return report_error(exc, verbose=args.verbose)
    return code


if __name__ == "__main__":
    sys.exit(main())
