"""``cxr runs list|clean``: the run workspaces (``runs/<run>/``) a store holds, and removing the stale ones.

A published run leaves no workspace; the ones listed belong to runs in progress, or to runs that failed, were
rejected in review or were abandoned. ``clean`` removes those idle for ``--older-than`` (default 48h) or rejected,
with the unpublished release folder each claimed (:mod:`pipeline.run.cleanup` says what is never touched).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

from pipeline.cli.releases import STORE_HELP, human_size

if TYPE_CHECKING:
    from pipeline.run.cleanup import StaleWorkspace
    from pipeline.store.storage import Store

DEFAULT_OLDER_THAN = "48h"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> dt.timedelta:
    """``48h``, ``7d``, ``90m`` (a number above 0, then m, h or d) as a time span.

    Raises:
        UsageError: anything else.
    """
    from pipeline.errors import UsageError

    match = _DURATION.fullmatch(text.strip().lower())
    span = dt.timedelta(**{_UNITS[match[2]]: float(match[1])}) if match else dt.timedelta(0)
    if span <= dt.timedelta(0):
        raise UsageError(
            f"--older-than {text!r} is not a duration: give a number above 0 and a unit, m (minutes), h (hours) or "
            "d (days), e.g. --older-than 48h, 7d or 90m"
        )
    return span


def _store(args: argparse.Namespace) -> Store:
    from pipeline.config import StoreConfig
    from pipeline.store.storage import Store

    store = Store(StoreConfig.from_env(args.store))
    store.require_bucket()
    return store


def _entry_text(store: Store, entry: StaleWorkspace) -> str:
    """``runs/r1/ (run r1, 12 objects, 1.2 KiB): idle 3d 4h; with unpublished release folder releases/v2/ (...)``."""
    release = ""
    if entry.release is not None:
        folder = f"releases/{entry.release}/ ({entry.release_objects} objects, {human_size(entry.release_bytes)})"
        release = f"; with unpublished release folder {folder}" if entry.workspace else folder
    if not entry.workspace:
        return f"{release} claimed by run {entry.run_id}, which left no workspace: {entry.reason}"
    run = f"run {entry.run_id}, " if entry.run_id else ""
    size = f"{entry.objects} objects, {human_size(entry.bytes)}"
    return f"{store.uri(entry.prefix or '')} ({run}{size}): {entry.reason}{release}"


def cmd_list(args: argparse.Namespace) -> int:
    from pipeline.run.cleanup import age_text, list_workspaces

    idle = parse_duration(args.older_than)
    store = _store(args)
    now = dt.datetime.now(dt.UTC)
    workspaces = list_workspaces(store, idle=idle, now=now)
    if args.json:
        fields = ("segment", "run_id", "objects", "bytes", "version", "stale")
        rows = [{k: getattr(w, k) for k in fields} | {"newest": w.newest.isoformat()} for w in workspaces]
        print(json.dumps({"workspaces": rows}, indent=2))
        return 0
    if not workspaces:
        print(f"no run workspace in {store.uri('runs/')}")
        return 0
    width = max(len(w.run_id or w.segment) for w in workspaces) + 2
    print(f"{'RUN':<{width}}{'AGE':>10}{'SIZE':>11}{'OBJECTS':>9}  STALE")
    for w in workspaces:
        stale = f"yes: {w.stale}" if w.stale else "no"
        size = human_size(w.bytes)
        print(f"{w.run_id or w.segment:<{width}}{age_text(now - w.newest):>10}{size:>11}{w.objects:>9}  {stale}")
    stale_count = sum(1 for w in workspaces if w.stale)
    print(f"{len(workspaces)} workspace(s), {stale_count} stale (idle {args.older_than} or rejected in review)")
    return 0


def _total(entries: list[StaleWorkspace]) -> tuple[int, int]:
    objects = sum(e.objects + e.release_objects for e in entries)
    return objects, sum(e.bytes + e.release_bytes for e in entries)


def cmd_clean(args: argparse.Namespace) -> int:
    from pipeline.run.cleanup import find_stale, remove

    idle = parse_duration(args.older_than)
    store = _store(args)
    stale = find_stale(store, idle=idle, keep_runs=args.keep or ())
    if args.dry_run:
        objects, size = _total(stale)
        if args.json:
            print(json.dumps({"dry_run": True, "would_remove": [_entry_text(store, e) for e in stale]}, indent=2))
            return 0
        for entry in stale:
            print(f"would remove {_entry_text(store, entry)}")
        print(f"dry run: would remove {len(stale)} item(s), {objects} objects ({human_size(size)}); nothing removed")
        return 0
    report = remove(store, stale)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    for entry in stale:
        if entry.prefix in report.removed or (not entry.workspace and f"releases/{entry.release}/" in report.removed):
            print(f"removed {_entry_text(store, entry)}")
    for note in report.skipped:
        print(f"kept {note}")
    print(
        f"total: removed {report.workspaces} workspace(s) and {report.releases} release folder(s), "
        f"{report.objects} objects ({human_size(report.bytes)})"
    )
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``runs`` (list, clean) to the ``cxr`` subcommands."""
    runs = sub.add_parser("runs", help="list run workspaces and remove those of failed, rejected or abandoned runs")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    older = f"a workspace is stale after this long without a write: 48h, 7d, 90m (default {DEFAULT_OLDER_THAN})"
    p = rsub.add_parser("list", help="every run workspace: run, age of its newest write, size, whether stale")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--older-than", default=DEFAULT_OLDER_THAN, metavar="DURATION", help=older)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = rsub.add_parser(
        "clean",
        help="remove stale workspaces and the unpublished release folders their runs claimed",
        description="Remove the workspaces (runs/<run>/) of runs idle for --older-than or rejected in review, "
        "with the unpublished release folder (a claim, no manifest) each claimed, and claims abandoned by runs "
        "that left no workspace. Published releases and the raw zone are never touched.",
    )
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--older-than", default=DEFAULT_OLDER_THAN, metavar="DURATION", help=older)
    p.add_argument("--keep", action="append", metavar="RUN_ID", help="never remove this run's workspace (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    p.add_argument("--json", action="store_true", help="what was removed, as JSON")
    p.set_defaults(func=cmd_clean)
