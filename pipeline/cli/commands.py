"""``cxr``: the command line of the NIH ChestX-ray14 release pipeline.

Commands: ``run`` (every stage, no Airflow), ``synth`` (a synthetic mirror), ``stack up|env|down``
(a local S3 endpoint), ``validate`` (metadata files), ``demo`` (the whole road through Airflow),
``ui`` (the Airflow UI on loopback) and ``deploy-env`` (the compose deployment's secrets file).
Progress bars live here, and only here.
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
from typing import Any

from pipeline import errors, options, progress
from pipeline.cli import releases as cli_releases
from pipeline.cli import runs as cli_runs
from pipeline.cli.progress_bar import TerminalProgress
from pipeline.review import decision
from pipeline.review.decision import Decision

#: Where the traceback of an internal error is written (default: the temporary directory).
LOG_DIR_ENV = "CXR_LOG_DIR"


def _setup_output(verbose: bool) -> None:
    level = logging.INFO if verbose or not sys.stderr.isatty() else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if sys.stderr.isatty():
        progress.set_listener(TerminalProgress(sys.stderr))


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.run import summary as run_summary
    from pipeline.run import tasks

    params = {option.name: getattr(args, option.name) for option in options.cli_options()}
    if args.approve and not args.review:
        raise errors.UsageError("--approve answers the review of --review: add --review (or leave --approve out)")
    cfg = tasks.config_from_params(params, run_id=args.run_id or tasks.new_run_id())
    summary = tasks.run_all(cfg, decide=_approve if args.approve else _ask_reviewer, isolate=True)
    rejected = int((summary.get("review") or {}).get("decision") == "rejected")  # exit 1: nothing was published
    if args.json:
        print(json.dumps(summary, indent=2))
        return rejected
    print("\n".join(run_summary.run_lines(summary)))
    return rejected


def _approve(brief: str) -> Decision:
    """``cxr run --review --approve``: print the brief, approve without asking (for scripts)."""
    print(brief, end="\n\n", flush=True)
    return decision.approved_by_flag()


def _ask_reviewer(brief: str) -> Decision:
    """``cxr run --review``: print the brief, ask whether to publish and why not; no answer (end of input) rejects."""
    print(brief, end="\n\n", flush=True)
    try:
        answer = input("Publish this release? [y/N] ")
        reason = input("Reason or note (kept with the run): ")
    except EOFError:
        return decision.from_answer("no", "no answer on the terminal")
    if answer.strip().lower() not in ("y", "yes") and not reason.strip():
        reason = "rejected on the terminal (no reason given)"
    return decision.from_answer(answer, reason)


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


def cmd_deploy_env(args: argparse.Namespace) -> int:
    from pipeline.dev.deploy import write_env

    dest = Path(args.dest)
    filled = write_env(dest.parent / "env.example" if args.example is None else Path(args.example), dest)
    print(f"wrote {dest} (readable by you only) with new values for {', '.join(filled)}")
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


def _add_option(parser: argparse.ArgumentParser, option: options.Option) -> None:
    """One ``cxr run`` flag from the options table (``pipeline.options``)."""
    if option.kind is bool:
        parser.add_argument(option.flag, dest=option.name, action="store_true", help=options.cli_help(option))
        return
    kwargs: dict[str, Any] = {"dest": option.name, "default": option.default, "help": options.cli_help(option)}
    if option.kind is list:
        kwargs["nargs"] = "+"
    else:
        kwargs["type"] = option.kind
    if option.choices:
        kwargs["choices"] = list(option.choices)
    if option.required_on_cli:
        kwargs["required"] = True
    parser.add_argument(option.flag, **kwargs)


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run every stage (each in a process of its own) and publish a release")
    for option in options.cli_options():
        _add_option(p, option)
    p.add_argument("--run-id", help="resume this run id (default: a new one)")
    p.add_argument("--approve", action="store_true", help="with --review: approve without asking (for scripts)")
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
    cli_runs.add_parsers(sub)
    p = sub.add_parser("deploy-env", help="write docker/.env with new secrets for the compose deployment")
    p.add_argument("dest", nargs="?", default="docker/.env", help="the file to write (never overwritten)")
    p.add_argument("--example", help="the template (default: env.example beside DEST)")
    p.set_defaults(func=cmd_deploy_env)
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


def _user_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
        disk = errors.local_disk_error(exc, "writing a local file")
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
    its traceback was written to (printed too with ``-v``), exit 70. The code is :func:`pipeline.errors.exit_code`'s,
    the mapping the DAG uses too.
    """
    code = errors.exit_code(exc)
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
    return errors.EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cxr`` console script: exit codes as :mod:`pipeline.errors` lists them, no traceback for
    an error a user can meet."""
    args = build_parser().parse_args(argv)
    _setup_output(args.verbose)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except Exception as exc:
        return report_error(exc, verbose=args.verbose)
    return code


if __name__ == "__main__":
    sys.exit(main())
