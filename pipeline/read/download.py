"""Copy a published release (or parts of it) to local disk, resumably, checking every file's SHA-256.

    from pipeline.read.download import download_release

    result = download_release(client.open("latest"), "data/", only=["parquet", "card"])
    result.root                      # data/<version>/, laid out exactly as the manifest's paths

This module owns the local copy: which manifest files each ``only`` group takes (:data:`GROUPS`), where a file
lands (:func:`local_path`, which refuses a manifest path that would lead outside the copy), and the download
itself. A file already there with the manifest's size and SHA-256 is kept; a ``<file>.part`` left by an
interrupted download is resumed with a ranged GET from its length; every file's SHA-256 is checked. A file whose
bytes differ from the manifest is removed and named in a :class:`~pipeline.errors.VerifyError` once the other files
are done (their matching copies are kept for the rerun). ``manifest.json`` is written last, only when every
selected file matched, so its presence says the copy is complete and the copy describes itself (``croissant.json``
reads its files relative to itself).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import UsageError, VerifyError, local_disk_error
from pipeline.plan.split import SPLITS
from pipeline.store import layout
from pipeline.store.refusals import is_transient

if TYPE_CHECKING:
    from botocore.response import StreamingBody

    from pipeline.read.client import Release
    from pipeline.store.storage import Store

__all__ = ["DOWNLOAD_WORKERS", "GROUPS", "DownloadResult", "download_release", "group_of", "local_path", "select"]

log = logging.getLogger(__name__)

#: The parts of a release ``only`` can name, with what each takes from the manifest.
GROUPS: dict[str, str] = {
    "parquet": "parquet/ (one row per image with its PNG bytes)",
    "webdataset": "webdataset/ (the tar shards and each split's index.json)",
    "metadata": "metadata.parquet, quarantine.parquet, annotations/*",
    "card": "README.md, card/*, croissant.json, validation/*",
}
DOWNLOAD_WORKERS = 4
CHUNK_BYTES = 1 << 20
#: Times one file's stream may break (a transient error mid-body) and be resumed before the error is raised.
STREAM_RESUMES = 3
LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class DownloadResult:
    """What a download left on disk: every selected file under ``root``, and what it took to get there."""

    version: str
    root: Path  #: ``dest/<version>``
    files: tuple[Path, ...]  #: the selected files, in manifest order (``manifest.json`` not included)
    fetched: int  #: files received from the store (whole or resumed)
    resumed: int  #: of ``fetched``, those continued from a ``.part`` with a ranged GET
    kept: int  #: files already there with the manifest's size and SHA-256
    bytes_fetched: int  #: bytes received from the store
    bytes_total: int  #: size of the selected files
    manifest: Path  #: ``root/manifest.json``, written last


def group_of(path: str) -> str | None:
    """The ``only`` group of a manifest path (``parquet/split=train/...`` -> ``parquet``); None for a path no group
    names (downloaded only with ``only=None``)."""
    top = path.split("/", 1)[0]
    if top in ("parquet", "webdataset"):
        return top
    if path in ("metadata.parquet", "quarantine.parquet") or top == "annotations":
        return "metadata"
    if path in ("README.md", "croissant.json") or top in ("card", "validation"):
        return "card"
    return None


def _groups(only: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if only is None:
        return None
    names = (only,) if isinstance(only, str) else tuple(dict.fromkeys(only))
    unknown = [name for name in names if name not in GROUPS]
    if unknown or not names:
        raise UsageError(
            f"only={only!r}: name one or more of {', '.join(GROUPS)} (or leave it out for the whole release)"
        )
    return names


def select(
    manifest: dict[str, Any], only: str | Sequence[str] | None = None, split: str | None = None,
    paths: Collection[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The manifest entries a download of ``only`` (of one ``split``'s Parquet parts and shards; of ``paths``) takes.

    Raises:
        UsageError: ``only`` names no group of :data:`GROUPS`, or ``split`` is not a split of the release.
    """
    groups = _groups(only)
    if split is not None and split not in SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    entries = [f for f in manifest["files"] if groups is None or group_of(f["path"]) in groups]
    others = [s for s in SPLITS if split is not None and s != split]
    skip = tuple(p for s in others for p in (f"parquet/split={s}/", f"webdataset/{s}/"))
    return [f for f in entries if not f["path"].startswith(skip) and (paths is None or f["path"] in paths)]


def local_path(version: str, dest: Path, path: str) -> Path:
    """``dest/<version>/<path>``, refusing a manifest path that would lead outside it (``..``, absolute, ``\\``).

    Raises:
        VerifyError: the manifest lists a path that is not a plain relative one.
    """
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(part in ("", ".", "..") for part in parts):
        raise VerifyError(
            f"release {version}'s manifest lists {path!r}, which is not a plain relative path; nothing was "
            f"written for it: run `cxr verify --release {version}` and tell the data engineers"
        )
    return dest / version / Path(*parts)


class _Tracker:
    """Bytes done of the whole download: feeds the caller's ``progress`` and logs a line every few seconds."""

    def __init__(self, version: str, files: int, total: int, progress: Callable[[int, int], None] | None) -> None:
        self.version, self.files, self.total, self.progress = version, files, total, progress
        self.done = self.fetched = 0
        self.start = self.last_log = time.monotonic()
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set when the download stops early: workers leave their .part for a rerun

    def add(self, n: int, fetched: bool) -> None:
        with self.lock:
            self.done += n
            self.fetched += n if fetched else 0
            if self.progress is not None:
                self.progress(self.done, self.total)
            now = time.monotonic()
            if now - self.last_log >= LOG_EVERY_S:
                self.last_log = now
                log.info(
                    "download %s (%d files): %.1f/%.1f MiB checked, %.1f MiB/s from the store", self.version,
                    self.files, self.done / 2**20, self.total / 2**20, self.fetched / 2**20 / (now - self.start),
                )  # fmt: skip


@dataclass(frozen=True)
class _Outcome:
    path: Path
    fetched: bool
    resumed: bool
    received: int


class _Stopped(Exception):
    """The download stopped early (another file failed, or an interrupt): this file is left as its ``.part``."""


class _Mismatch(Exception):
    """One file's bytes differ from the manifest (collected, then raised together as a VerifyError)."""


@contextmanager
def _local_disk(what: str, where: str | None = None) -> Iterator[None]:
    """Raise a write this machine's disk refused (full, read-only, over quota) as a LocalDiskError."""
    try:
        yield
    except OSError as exc:
        disk = local_disk_error(exc, what, where)
        if disk is None:
            raise
        raise disk from exc


def _hash_into(path: Path, digest: Any) -> int:
    """Feed ``path``'s bytes into ``digest`` (a hashlib object); return how many there were."""
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            size += len(chunk)
    return size


def _open_from(store: Store, rel: str, start: int) -> tuple[StreamingBody, bool]:
    """A stream of ``rel`` from byte ``start``, and whether it starts at byte 0 (a store without ranged reads)."""
    kwargs: dict[str, Any] = {"Bucket": store.bucket, "Key": store.key(rel)}
    if start:
        kwargs["Range"] = f"bytes={start}-"
    response = store.retrying(f"reading {store.uri(rel)}", lambda: store.client.get_object(**kwargs), frozenset())
    return response["Body"], not (start and response.get("ContentRange"))


class _Job:
    """One manifest file: keep it, resume its ``.part``, or fetch it; check its SHA-256 either way."""

    def __init__(self, store: Store, version: str, entry: dict[str, Any], target: Path, tracker: _Tracker) -> None:
        self.store, self.version, self.entry, self.target, self.tracker = store, version, entry, target, tracker
        self.rel = layout.release_key(version, entry["path"])
        self.part = target.with_name(target.name + ".part")
        self.size, self.sha256 = int(entry["size"]), str(entry["sha256"])
        self.counted = 0  # bytes of this file reported to the tracker

    def _add(self, n: int, fetched: bool) -> None:
        self.counted += n
        self.tracker.add(n, fetched)

    def run(self) -> _Outcome:
        if self.tracker.stop.is_set():
            raise _Stopped("download stopped")
        with _local_disk(f"downloading {self.store.uri(self.rel)}", str(self.target.parent)):
            outcome = self._run()
        return outcome

    def _run(self) -> _Outcome:
        if self.target.is_file() and self.target.stat().st_size == self.size:
            if _hash_into(self.target, digest := hashlib.sha256()) == self.size and digest.hexdigest() == self.sha256:
                self._add(self.size, fetched=False)
                return _Outcome(self.target, False, False, 0)
            log.warning("%s differs from the manifest of release %s: fetching it again", self.target, self.version)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        have = self.part.stat().st_size if self.part.is_file() else 0
        resumed = 0 < have <= self.size  # a longer .part holds other bytes: fetching anew overwrites it
        received, matched = self._fetch(resume=resumed)
        if not matched and resumed:  # the .part may be from other bytes (a stale copy): once more from scratch
            log.warning("%s: the resumed copy does not match; fetching it whole", self.target)
            self.part.unlink()
            more, matched = self._fetch(resume=False)
            received, resumed = received + more, False
        if not matched:
            self.part.unlink(missing_ok=True)
            self.target.unlink(missing_ok=True)
            raise _Mismatch(self.entry["path"])
        self.part.replace(self.target)
        return _Outcome(self.target, True, resumed, received)

    def _fetch(self, resume: bool) -> tuple[int, bool]:
        """Write the object into ``.part`` (appending when ``resume``); return (bytes received, SHA-256 matched)."""
        self._add(-self.counted, fetched=False)
        digest = hashlib.sha256()
        written = _hash_into(self.part, digest) if resume else 0
        self._add(written, fetched=False)
        if written and written == self.size:  # a whole .part (stopped just before its rename): nothing to fetch
            return 0, digest.hexdigest() == self.sha256
        received, breaks = 0, 0
        while True:
            stream, from_start = _open_from(self.store, self.rel, written)
            if from_start and written:
                log.info("%s: the store sent the whole object (no ranged reads); starting over", self.rel)
                self._add(-self.counted, fetched=False)
                written, digest = 0, hashlib.sha256()
            try:
                with self.part.open("ab" if written else "wb") as out:
                    for chunk in iter(partial(stream.read, CHUNK_BYTES), b""):
                        if self.tracker.stop.is_set():
                            raise _Stopped(f"download stopped; {self.part} is resumed by a rerun")
                        out.write(chunk)
                        digest.update(chunk)
                        written, received = written + len(chunk), received + len(chunk)
                        self._add(len(chunk), fetched=True)
                        if written > self.size:
                            return received, False
                break
            except Exception as exc:
                breaks += 1
                if not is_transient(exc) or breaks > STREAM_RESUMES:
                    raise
                log.warning("%s: the stream broke after %d bytes (%s); resuming", self.rel, written, exc)
            finally:
                stream.close()
        return received, written == self.size and digest.hexdigest() == self.sha256


def _mismatch_error(version: str, store: Store, root: Path, paths: list[str], matched: int) -> VerifyError:
    shown = ", ".join(store.uri(layout.release_key(version, p)) for p in paths[:10])
    more = f" and {len(paths) - 10} more" if len(paths) > 10 else ""
    return VerifyError(
        f"release {version}: {len(paths)} file(s) in the store differ from the manifest (SHA-256 or size): "
        f"{shown}{more}; their local copies were removed and {root / layout.MANIFEST} was not written ({matched} "
        f"other files matched and are kept). Tell the data engineers (`cxr verify --release {version}` lists the "
        "damage); once the store is repaired, rerun the download: it fetches only what is missing"
    )


def _write_manifest(body: bytes, root: Path) -> Path:
    target = root / layout.MANIFEST
    part = target.with_name(target.name + ".part")
    with _local_disk(f"writing {target}"):
        part.write_bytes(body)
        part.replace(target)
    return target


def _run_jobs(jobs: list[_Job], workers: int, tracker: _Tracker) -> tuple[list[_Outcome], list[str]]:
    """Run every job on ``workers`` threads; return the outcomes (manifest order) and the files that mismatched.

    A mismatch lets the other files finish; any other error (or an interrupt) stops the rest at once, leaving
    each file in flight as a ``.part`` a rerun resumes, and is raised.
    """
    outcomes: dict[int, _Outcome] = {}
    mismatched: list[str] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="download")
    try:
        futures: dict[Future[_Outcome], int] = {pool.submit(job.run): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            try:
                outcomes[futures[future]] = future.result()
            except _Mismatch as exc:
                mismatched.append(str(exc))
    except BaseException:
        tracker.stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [outcomes[i] for i in sorted(outcomes)], sorted(mismatched)


def download_release(
    release: Release,
    dest: str | Path,
    *,
    only: str | Sequence[str] | None = None,
    split: str | None = None,
    paths: Collection[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = DOWNLOAD_WORKERS,
) -> DownloadResult:
    """Copy the files of ``release`` the manifest lists (all, or the ``only`` groups) to ``dest/<version>/``.

    Args:
        release: An opened release (:meth:`pipeline.read.client.ReleaseClient.open`).
        dest: The folder the copy goes under (created if missing).
        only: None for everything, or one or more of :data:`GROUPS` (``parquet``, ``webdataset``, ``metadata``,
            ``card``).
        split: Only this split's Parquet parts and WebDataset shards (the other groups are not per split).
        paths: Only these manifest paths (e.g. the Parquet parts that hold a selection's images).
        progress: Called with (bytes done, bytes total) as files are checked and received, from worker threads
            (one call at a time).
        workers: Files downloaded at once.

    Raises:
        UsageError: ``only`` or ``split`` names nothing the release has.
        VerifyError: a file in the store differs from the manifest (every such file is named; the matching ones are
            kept), or the manifest lists a path outside the copy.
        LocalDiskError: the local disk refused a write.
    """
    version, store = release.version, release.client.store
    root = Path(dest) / version
    for entry in select(release.manifest, only, split, paths):  # a path outside the copy: refused before any request
        local_path(version, Path(dest), entry["path"])
    body = store.get_bytes(layout.manifest_key(version))  # as published: its SHA-256 is the one latest.json has
    entries = select(json.loads(body), only, split, paths)
    targets = [local_path(version, Path(dest), entry["path"]) for entry in entries]
    with _local_disk(f"creating {root}"):
        root.mkdir(parents=True, exist_ok=True)
        (root / layout.MANIFEST).unlink(missing_ok=True)  # its presence says the last download completed
    total = sum(int(entry["size"]) for entry in entries)
    log.info("download %s: %d files (%.1f MiB) to %s", version, len(entries), total / 2**20, root)
    tracker = _Tracker(version, len(entries), total, progress)
    jobs = [_Job(store, version, entry, target, tracker) for entry, target in zip(entries, targets, strict=True)]
    outcomes, mismatched = _run_jobs(jobs, workers, tracker)
    if mismatched:
        raise _mismatch_error(version, store, root, mismatched, len(outcomes))
    manifest = _write_manifest(body, root)
    fetched = [outcome for outcome in outcomes if outcome.fetched]
    result = DownloadResult(
        version, root, tuple(outcome.path for outcome in outcomes), len(fetched), sum(o.resumed for o in fetched),
        len(outcomes) - len(fetched), sum(o.received for o in fetched), total, manifest,
    )  # fmt: skip
    log.info(
        "download %s: %d files (%.1f MiB) in %s: %d fetched (%d resumed), %d kept, %.1f s", version, len(outcomes),
        total / 2**20, root, result.fetched, result.resumed, result.kept, time.monotonic() - tracker.start,
    )  # fmt: skip
    return result
