"""``cxr releases list|show|diff|download`` and ``cxr verify``: look at what a store has published, copy it locally.

Only versions with a ``manifest.json`` are releases. Versions that were claimed or half-written by a run
that has not finished (or crashed) are shown only by ``cxr releases list --incomplete``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.review.decision import review_text  # standard library only

if TYPE_CHECKING:
    from pipeline.read.download import DownloadResult
    from pipeline.store.storage import Store

#: Same as ``pipeline.plan.split.SPLITS``; repeated so ``cxr --help`` does not import pandas and boto3.
SPLITS = ("train", "val", "test")
#: Same as ``pipeline.read.download.GROUPS``' names (repeated for the same reason).
DOWNLOAD_PARTS = ("parquet", "webdataset", "metadata", "card")
STORE_HELP = "s3://BUCKET[/PREFIX] (default: $CXR_STORE; endpoint and keys from the AWS_* variables)"


def _store(args: argparse.Namespace) -> Store:
    from pipeline.config import StoreConfig
    from pipeline.store.storage import Store

    store = Store(StoreConfig.from_env(args.store))
    store.require_bucket()  # a missing bucket is named as such, not reported as "no release published"
    return store


def _check_versions(*versions: str) -> None:
    """Refuse a release argument that is neither ``latest`` nor a release name (``../v1``) before the store is asked."""
    from pipeline.config import check_version_arg

    for version in versions:
        check_version_arg(version)


def human_size(size: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _row(version: str, manifest: dict[str, Any], latest: str | None) -> str:
    counts = manifest.get("counts", {})
    mark = "*" if version == latest else " "
    size = human_size(sum(int(f["size"]) for f in manifest.get("files", [])))
    per_split = "".join(f"{counts.get(s, 0):>8}" for s in SPLITS)
    return f"{version:<16}{mark}{manifest.get('images', 0):>8}{per_split}{size:>11}  {manifest.get('parent') or '-'}"


def cmd_list(args: argparse.Namespace) -> int:
    from pipeline.publish.latest import read_latest
    from pipeline.publish.listing import list_versions
    from pipeline.publish.manifest import read_manifest

    store = _store(args)
    listing = list_versions(store)
    latest = (read_latest(store) or {}).get("version")
    manifests = {v: read_manifest(store, v) or {} for v in listing.published}
    if args.json:
        keys = ("images", "counts", "parent", "published_at")
        rows = [{"version": v, "latest": v == latest, **{k: m.get(k) for k in keys}} for v, m in manifests.items()]
        out: dict[str, Any] = {"releases": rows}
        if args.incomplete:
            out["incomplete"] = listing.incomplete
        print(json.dumps(out, indent=2))
        return 0
    if not listing.published:
        print(f"no release published in {store.uri('releases/')} yet")
    else:
        print(f"{'VERSION':<17}{'IMAGES':>8}" + "".join(f"{s.upper():>8}" for s in SPLITS) + f"{'SIZE':>11}  PARENT")
        for version, manifest in manifests.items():
            print(_row(version, manifest, latest))
        print("(* = latest)")
    if args.incomplete:
        print(f"incomplete (claimed or being written, not releases): {', '.join(listing.incomplete) or 'none'}")
    return 0


def code_text(provenance: dict[str, Any]) -> str:
    """The DAG bundle (``name@version``) or the git commit the release's code came from."""
    bundle, version, code = provenance.get("bundle_name"), provenance.get("bundle_version"), provenance.get("code")
    if version:
        return f"bundle {bundle}@{version}"
    commit = f"git commit {code['commit']}{' (uncommitted changes)' if code.get('dirty') else ''}" if code else ""
    named = [part for part in (f"bundle {bundle} (unversioned)" if bundle else "", commit) if part]
    return ", ".join(named) or "unknown (no bundle version, no git commit)"


def _provenance_lines(manifest: dict[str, Any]) -> list[str]:
    """The ``provenance`` block; none for a release published before manifests recorded it."""
    provenance = manifest.get("provenance")
    if not isinstance(provenance, dict):
        return []
    orchestrator = f" ({provenance['orchestrator']})" if provenance.get("orchestrator") else ""
    lines = [
        "  provenance",
        f"    pipeline      {provenance.get('pipeline_version')}",
        f"    code          {code_text(provenance)}",
        f"    run           {provenance.get('run_id')}{orchestrator}",
        f"    logical date  {provenance.get('logical_date') or '-'}",
    ]
    review = provenance.get("review")
    if isinstance(review, dict):
        lines.append(f"    review        {review_text(review)}")
    return lines


def _show_lines(manifest: dict[str, Any], latest: str | None) -> list[str]:
    version = str(manifest["version"])
    config = manifest.get("config", {})
    patients = manifest.get("patients", {})
    files = manifest.get("files", [])
    lines = [
        f"release {version}{'  (latest)' if version == latest else ''}",
        f"  published   {manifest.get('published_at', '?')} by run {manifest.get('created_by_run')}",
        f"  parent      {manifest.get('parent') or '-'}",
        f"  pipeline    {manifest.get('pipeline_version')}   inputs {manifest.get('input_fingerprint', '')[:16]}",
        f"  split       {manifest.get('split_mode')}  seed {config.get('seed')}  val {config.get('val_fraction')}  "
        f"test {config.get('test_fraction')}",
    ]
    for split in SPLITS:
        lines.append(
            f"  {split:<11} {manifest['counts'].get(split, 0):>8} images {patients.get(split, '?'):>8} patients"
        )
    lines.append(f"  quarantined {manifest.get('quarantined', 0):>8}")
    lines.append(f"  files       {len(files):>8} ({human_size(sum(int(f['size']) for f in files))})")
    validation = manifest.get("validation") or {}
    if validation:
        lines.append(
            f"  validation  {'ok' if validation.get('ok') else 'FAILED'}: {validation.get('expectations')} "
            f"expectations, {validation.get('warnings')} warnings"
        )
    if manifest.get("diff_from_parent"):
        lines.append("  vs parent   " + ", ".join(f"{k} {v}" for k, v in manifest["diff_from_parent"].items()))
    for layer in manifest.get("annotations") or []:
        names = ", ".join(f["name"] for f in layer.get("files", []))
        lines.append(
            f"  layer       {layer['id']}: {layer['kind']} ({layer.get('variant')}), "
            f"{layer.get('images_covered', 0):,} images covered, from {names}"
        )
    lines.extend(_provenance_lines(manifest))
    lines.append("  card        README.md, croissant.json (beside manifest.json)")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    from pipeline.publish.latest import read_latest
    from pipeline.publish.listing import resolve_version
    from pipeline.publish.manifest import manifest_key, read_manifest

    _check_versions(args.version)
    store = _store(args)
    version = resolve_version(store, args.version)
    manifest = read_manifest(store, version)
    if manifest is None:
        from pipeline.errors import ReleaseNotFoundError

        raise ReleaseNotFoundError(
            f"release {version} is not published in {store.uri('releases/')}; see `cxr releases list`"
        )
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    latest = (read_latest(store) or {}).get("version")
    print("\n".join(_show_lines(manifest, latest)))
    print(f"  location    {store.uri(manifest_key(version)).removesuffix('manifest.json')}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from pipeline.publish import diff

    _check_versions(args.old, args.new)
    changes = diff.diff_releases(_store(args), args.old, args.new)
    print(diff.render_json(changes) if args.json else diff.render_text(changes, limit=args.limit))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.publish.verify import verify_release

    _check_versions(args.release)
    report = verify_release(_store(args), args.release, limit=args.limit)
    if args.json:
        print(json.dumps({"version": report.version, "ok": report.ok, "files": report.files,
                          "bytes": report.bytes, "problems": report.problems}, indent=2))  # fmt: skip
    elif report.ok:
        print(f"release {report.version}: {report.files} files ({human_size(report.bytes)}) match the manifest")
    else:
        print(f"release {report.version}: FAILED verification; first mismatches:")
        print("\n".join(f"  {problem}" for problem in report.problems))
    return 0 if report.ok else 1


class ByteBar:
    """The live progress line of ``cxr releases download``: MiB checked or received of MiB selected."""

    def __init__(self, stage: str, stream: TextIO) -> None:
        from pipeline.cli.progress_bar import TerminalProgress

        self.stage, self.bar = stage, TerminalProgress(stream)
        self.start = time.monotonic()
        self.last = 0.0
        self.done = self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self.draw(finished=False)

    def draw(self, finished: bool) -> None:
        """Draw the line (and end it when ``finished``)."""
        from pipeline.progress import ProgressEvent

        rate = self.done / 2**20 / max(time.monotonic() - self.start, 1e-6)
        self.bar(ProgressEvent(self.stage, self.done >> 20, self.total >> 20, rate, finished=finished))


def _download_lines(result: DownloadResult) -> list[str]:
    fetched = result.bytes_fetched
    resumed = f", {result.resumed} resumed from a .part" if result.resumed else ""
    return [
        f"release {result.version}: {len(result.files)} files ({human_size(result.bytes_total)}) in {result.root}, "
        "each matching the manifest's SHA-256",
        f"  fetched   {result.fetched:>6} files ({human_size(fetched)} from the store{resumed})",
        f"  kept      {result.kept:>6} files already there and matching",
        f"  manifest  {result.manifest} (written last)",
    ]


def cmd_download(args: argparse.Namespace) -> int:
    from pipeline.errors import UsageError

    _check_versions(args.version)
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give at least 1")
    from pipeline.read.client import ReleaseClient
    from pipeline.read.download import download_release

    client = ReleaseClient(args.store)
    client.store.require_bucket()
    release = client.open(args.version)
    bar = ByteBar(f"download {release.version} MiB", sys.stderr) if sys.stderr.isatty() else None
    try:
        result = download_release(
            release, args.dest, only=args.only, split=args.split, progress=bar, workers=args.workers
        )
    finally:
        if bar is not None:
            bar.draw(finished=True)
    if args.json:
        fields = ("version", "fetched", "resumed", "kept", "bytes_fetched", "bytes_total")
        out = {k: getattr(result, k) for k in fields} | {"root": str(result.root), "manifest": str(result.manifest)}
        print(json.dumps(out | {"files": [str(p) for p in result.files]}, indent=2))
        return 0
    print("\n".join(_download_lines(result)))
    return 0


def _add_download(rsub: Any) -> None:
    p = rsub.add_parser(
        "download",
        help="copy a release (or parts of it) to DEST/<version>/, resumably, checking every file's SHA-256",
        description="Copy the files a release's manifest lists to DEST/<version>/ in the manifest's layout (so "
        "croissant.json works on the copy). Files already there and matching are kept, a .part left by an "
        "interrupted download is resumed, and manifest.json is written last, only when every file matched.",
    )
    p.add_argument("version", help="VERSION or latest")
    p.add_argument("dest", help="folder the copy goes under")
    p.add_argument("--only", nargs="+", action="extend", choices=DOWNLOAD_PARTS,
                   help="only these parts: parquet (pixels as Parquet), webdataset (tars and index.json), metadata "
                   "(metadata, quarantine and annotation tables), card (README.md, plots, croissant.json, "
                   "validation); default: everything")  # fmt: skip
    p.add_argument("--split", choices=SPLITS, help="only this split's Parquet parts and shards")
    p.add_argument("--workers", type=int, default=4, help="files downloaded at once (default 4)")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--json", action="store_true", help="what was written, as JSON")
    p.set_defaults(func=cmd_download)


def add_parsers(sub: Any) -> None:
    """Add ``releases`` (list, show, diff, download) and ``verify`` to the ``cxr`` subcommands."""
    releases = sub.add_parser("releases", help="list, show, compare and download published releases")
    rsub = releases.add_subparsers(dest="releases_command", required=True)
    p = rsub.add_parser("list", help="published releases, oldest first (* marks latest)")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--incomplete", action="store_true", help="also name versions claimed but not published")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = rsub.add_parser("show", help="one release's summary from its manifest")
    p.add_argument("version", help="VERSION or latest")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.set_defaults(func=cmd_show)
    p = rsub.add_parser("diff", help="images added, removed, relabelled and moved between two releases")
    p.add_argument("old", help="VERSION or latest")
    p.add_argument("new", help="VERSION or latest")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--json", action="store_true", help="every change as JSON")
    p.add_argument("--limit", type=int, default=20, help="examples shown per category (default 20)")
    p.set_defaults(func=cmd_diff)
    _add_download(rsub)
    p = sub.add_parser("verify", help="re-check a published release against its manifest (exit 1 on a mismatch)")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--release", required=True, help="VERSION or latest")
    p.add_argument("--limit", type=int, default=10, help="mismatches shown at most (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)
