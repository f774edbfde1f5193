"""Ingest throughput: one full-size synthetic shard into a local S3 store, next to the store's raw PUT speed.

Measured in one run, against one local SeaweedFS endpoint started for the purpose, each measurement in a
fresh child process (same start for all, own peak RSS):

- **raw PUT**: the shard's PNG bytes (read into memory first) PUT with the same concurrency, each with its
  SHA-256 checksum as ``extract`` sends it: the ceiling for landing these bytes in this store;
- **extract zip / tar.gz**: ``extract_shard`` of the same images as a stored zip and as a tar.gz, each into
  a fresh prefix (so nothing is skipped);
- **peak RSS** of the zip extraction for a half-size and the full-size shard: flat when streaming works;
- **client CPU per image**, which tells what the extraction adds when the host is short of CPU.

Rounds (``CXR_BENCH_REPEAT``, default 3) run PUT, zip and tar.gz back to back; the table gives the best
time of each and the median of the per-round ratios (less exposed to load from other processes). The
generated shards are cached under ``.cxr/bench/`` (``CXR_BENCH_DIR``); ``CXR_BENCH_IMAGES`` (default
1200) sets the shard size, ``CXR_UPLOAD_WORKERS`` (default 16) the concurrency. Generation costs about
45 ms per 1024-px image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import rss_mb, run_child
from pipeline.dev.stack import LocalS3, StackInfo

ROOT = Path(__file__).resolve().parents[1]
IMAGES = int(os.environ.get("CXR_BENCH_IMAGES", "1200"))
WORKERS = int(os.environ.get("CXR_UPLOAD_WORKERS", "16"))
REPEAT = int(os.environ.get("CXR_BENCH_REPEAT", "3"))
BENCH_DIR = Path(os.environ.get("CXR_BENCH_DIR", ROOT / ".cxr" / "bench"))
BUCKET = "bench"


# --- inputs ------------------------------------------------------------------------------------------


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist() if not info.is_dir()]


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2017, 9, 26, 0, 0, 0)), data)
    partial.replace(path)


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    partial = path.with_suffix(".partial")
    with tarfile.open(partial, "w:gz", compresslevel=6) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    partial.replace(path)


def shards(images: int) -> dict[str, Path]:
    """The cached benchmark shards: ``full.zip``, ``full.tar.gz`` and ``half.zip`` (first half of the images)."""
    folder = BENCH_DIR / f"ingest-{images}"
    paths = {
        "zip": folder / "images_001.zip",
        "tar": folder / "images_01.tar.gz",
        "half": folder / "half" / "images_001.zip",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    from pipeline.dev.synth import SynthConfig, synthesize

    print(f"  generating {images} synthetic 1024-px images (cached in {folder}) ...", flush=True)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR.parent if BENCH_DIR.parent.is_dir() else None) as tmp:
        synthesize(SynthConfig(dest=Path(tmp), images=images, image_size=1024, seed=2017))
        members = [m for archive in sorted(Path(tmp).glob("images_*.zip")) for m in _members(archive)]
    members = [(f"images_001/images/{Path(n).name}", data) for n, data in members]
    paths["half"].parent.mkdir(parents=True, exist_ok=True)
    _write_zip(paths["zip"], members)
    _write_zip(paths["half"], members[: images // 2])
    _write_tar(paths["tar"], [(f"images/{Path(n).name}", d) for n, d in members])
    return paths


# --- measurements -----------------------------------------------------------------------------------


def child(mode: str, archive: Path, stack: StackInfo) -> dict[str, Any]:
    """Run one measurement (``put`` or ``extract``) in a fresh process: same start for both, own peak RSS."""
    store = f"s3://{BUCKET}/{mode}-{uuid.uuid4().hex[:8]}"
    args = [f"--{mode}", str(archive), store]
    return run_child("benchmarks.ingest", args, stack.env(), f"{mode} of {archive}")


def put_main(archive: str, store_uri: str) -> dict[str, Any]:
    """In a child: PUT every member of the archive (read beforehand), checksum included, ``WORKERS`` at a time."""
    from pipeline.config import StoreConfig
    from pipeline.store.storage import Store

    store = Store(StoreConfig.from_env(store_uri))
    members = _members(Path(archive))

    def put(item: tuple[str, bytes]) -> None:
        name, data = item
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        key = store.key(f"put/{Path(name).name}")
        store.client.put_object(Bucket=store.bucket, Key=key, Body=data, ChecksumSHA256=checksum)

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(put, members))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "images": len(members)}


def extract_main(archive: str, store_uri: str) -> dict[str, Any]:
    """In a child: import everything, note the RSS, extract the archive into a fresh prefix."""
    from pipeline.config import StoreConfig
    from pipeline.ingest import extract, files
    from pipeline.store.storage import Store

    store = Store(StoreConfig.from_env(store_uri))
    ref = files.local_ref(Path(archive))
    before = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    result = extract.extract_shard(store, ref, upload_workers=WORKERS)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    figures = {"seconds": seconds, "cpu_seconds": cpu, "images": result.images}
    return figures | {"rss_before_mb": before, "rss_peak_mb": rss_mb()}


def _row(
    what: str, seconds: float, cpu_seconds: float, images: int, megabytes: float, ceiling: float | None
) -> dict[str, Any]:
    mb_s = megabytes / seconds
    return {
        "what": what,
        "images/s": images / seconds,
        "MB/s": mb_s,
        "x raw PUT": mb_s / ceiling if ceiling else 1.0,
        "seconds": seconds,
        "client CPU ms/image": 1000 * cpu_seconds / images,
    }


def run() -> dict[str, Any]:
    """Measure raw PUT and extraction side by side; return the figures and a printable table."""
    paths = shards(IMAGES)
    with zipfile.ZipFile(paths["zip"]) as zf:
        sizes = [info.file_size for info in zf.infolist() if not info.is_dir()]
    megabytes, images = sum(sizes) / 1e6, len(sizes)
    samples: dict[str, list[float]] = {"put": [], "zip": [], "tar": []}
    rss: dict[str, dict[str, Any]] = {}
    cpu: dict[str, float] = {}
    with LocalS3() as stack:
        from pipeline.store.client import make_client

        make_client(stack.store_config()).create_bucket(Bucket=BUCKET)
        for _ in range(REPEAT):  # interleaved, so load from elsewhere hits all three alike
            for kind in ("put", "zip", "tar"):
                measured = child("put" if kind == "put" else "extract", paths["zip" if kind == "put" else kind], stack)
                assert measured["images"] == images, measured
                samples[kind].append(measured["seconds"])
                cpu[kind] = min(cpu.get(kind, 1e9), measured["cpu_seconds"])
                if kind != "put":
                    rss[kind] = measured
        rss["half"] = child("extract", paths["half"], stack)
    best = {kind: min(values) for kind, values in samples.items()}
    ceiling = megabytes / best["put"]
    # Per round, PUT and extractions ran back to back: their ratio is less exposed to load from elsewhere.
    rounds = {k: statistics.median(p / x for p, x in zip(samples["put"], samples[k], strict=True)) for k in samples}
    table = [
        _row(f"raw PUT ({WORKERS} concurrent)", best["put"], cpu["put"], images, megabytes, None),
        _row("extract images_001.zip", best["zip"], cpu["zip"], images, megabytes, ceiling),
        _row("extract images_01.tar.gz", best["tar"], cpu["tar"], images, megabytes, ceiling),
    ]
    for row, kind in zip(table, ("put", "zip", "tar"), strict=True):
        row["x raw PUT, median round"] = rounds[kind]
    notes = [
        f"{images} images, {megabytes:.0f} MB of PNG, {os.cpu_count()} CPUs shared with the S3 server, "
        f"best of {REPEAT}",
        f"peak RSS of extraction: {rss['half']['rss_peak_mb']:.0f} MB for {images // 2} images, "
        f"{rss['zip']['rss_peak_mb']:.0f} MB for {images} (zip), {rss['tar']['rss_peak_mb']:.0f} MB (tar.gz); "
        f"{rss['zip']['rss_before_mb']:.0f} MB after imports",
    ]
    return {
        "images": images,
        "megabytes": megabytes,
        "workers": WORKERS,
        "cpus": os.cpu_count(),
        "seconds": best,
        "ratio_median_round": rounds,
        "samples_seconds": samples,
        "client_cpu_seconds": cpu,
        "rss_mb": {k: v["rss_peak_mb"] for k, v in rss.items()},
        "rss_after_imports_mb": rss["zip"]["rss_before_mb"],
        "table": table,
        "notes": notes,
    }


if __name__ == "__main__":
    if sys.argv[1:2] in (["--put"], ["--extract"]):
        main_of = put_main if sys.argv[1] == "--put" else extract_main
        print(json.dumps(main_of(sys.argv[2], sys.argv[3])))
    else:
        from benchmarks.__main__ import main

        sys.exit(main(["ingest"]))
