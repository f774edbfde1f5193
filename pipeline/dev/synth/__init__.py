"""A deterministic synthetic mirror of the NIH ChestX-ray14 dataset's layout.

``synthesize(SynthConfig(dest))`` writes into ``dest``:

- 12 image shards ``images_001.zip`` .. ``images_012.zip`` (or NIH Box's ``images_01.tar.gz`` ..
  ``images_12.tar.gz``), sized in the real proportions, members ``images/<patient>_<follow-up>.png``
  sorted by name across shards (shard 1 holds the lowest patient ids).  Only non-empty shards are
  written; 12 or more images fill all 12.
- 1024x1024 8-bit grayscale PNGs that look like chest films and weigh 300-450 KB like the real ones
  (``image_size`` shrinks them for fast tests).
- ``Data_Entry_2017.csv`` (original 2017 header, trailing comma included), ``BBox_List_2017.csv``
  (boxes on ~1% of the images, all in the test list), ``train_val_list.txt`` / ``test_list.txt``
  (patient-disjoint, about 77/23 of the images).

Output is byte-identical for the same (seed, images, image_size, archive, quirks), whatever the number
of worker processes.

With ``quirks=True`` the real dataset's oddities are added (counts in ``SynthSummary.quirks``):

- ``rgba_image``: ~0.5% of PNGs are RGBA (grey repeated in R, G, B; alpha 255; an XMP packet);
- ``la_image``: a few 2-channel LA PNGs (grey plus opaque alpha);
- ``impossible_age``: a few ages of 148-155 or 411-414 (as in the 2017 file);
- ``no_finding_underscore``: ``No_Finding`` instead of ``No Finding`` in a few rows;
- ``age_years_string`` / ``age_months_string`` / ``age_days_string``: ages written as ``058Y``
  in ~5% of rows, and one ``011M`` and one ``001D``;
- ``pixel_spacing_float_noise``: spacings like ``0.14300000000000002`` in ~2% of rows;
- ``zero_padded_follow_up``: ``Follow-up #`` written as ``005`` in ~2% of rows;
- ``header_without_trailing_comma``: the Data_Entry header drops its trailing comma.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.dev.synth import archives, images, metadata, quirks
from pipeline.errors import UsageError
from pipeline.nih import (
    BBOX_LIST,
    DATA_ENTRY_2017,
    TAR_SHARD_NAMES,
    TEST_LIST,
    TRAIN_VAL_LIST,
    ZIP_SHARD_NAMES,
)

__all__ = ["SynthConfig", "SynthSummary", "make_plan", "synthesize"]

log = logging.getLogger(__name__)
#: Below this many images a process pool costs more than it saves.
POOL_MIN_IMAGES = 64
_STREAM_QUIRKS = 14
LOG_EVERY_SECONDS = 5.0
_DATASET_FILES = (*ZIP_SHARD_NAMES, *TAR_SHARD_NAMES, DATA_ENTRY_2017, BBOX_LIST, TRAIN_VAL_LIST, TEST_LIST)


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize.

    Attributes:
        dest: Directory to write into; must be empty or missing unless ``overwrite``.
        images: Number of images.
        seed: Seed of every random choice.
        image_size: Side of the square PNGs (1024 like the real ones; smaller for fast tests).
        archive: ``zip`` (Kaggle naming) or ``tar.gz`` (NIH Box naming).
        quirks: Add the real dataset's quirks (see the module docstring).
        overwrite: Allow a non-empty ``dest``; files with dataset names in it are replaced or removed,
            other files are left alone.
        workers: Processes rendering images; 0 picks min(2, CPUs) for 64 images or more, else 1.
    """

    dest: Path
    images: int = 240
    seed: int = 0
    image_size: int = 1024
    archive: Literal["zip", "tar.gz"] = "zip"
    quirks: bool = False
    overwrite: bool = False
    workers: int = 0


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote."""

    dest: Path
    images: int
    patients: int
    shards: list[tuple[str, int]]  # (archive name, image count), non-empty shards in order
    files: list[str]  # paths relative to dest, sorted
    quirks: dict[str, int] = field(default_factory=dict)  # kind -> count; empty without quirks


def make_plan(seed: int, n: int, with_quirks: bool) -> metadata.Plan:
    """The complete metadata (records, split, boxes, quirks) of an ``n``-image synthetic dataset.

    Args:
        seed: The dataset seed.
        n: Number of images.
        with_quirks: Whether to plan the real dataset's quirks.

    Returns:
        The plan; its records are sorted by image name.
    """
    records = metadata.make_records(seed, n)
    test = metadata.split_test(seed, records)
    boxes = metadata.make_boxes(seed, records, test)
    if not with_quirks:
        return metadata.Plan(records=records, test=test, boxes=boxes)
    q = quirks.plan_quirks(records, metadata.stream_rng(seed, _STREAM_QUIRKS))
    return metadata.Plan(records, test, boxes, modes=q.modes, overrides=q.overrides, quirks=q.counts)


def synthesize(config: SynthConfig, progress: Callable[[int], None] | None = None) -> SynthSummary:
    """Write a synthetic ChestX-ray14 mirror into ``config.dest``.

    Args:
        config: What to write and where.
        progress: Called with the number of images just written (1 per image), e.g. to drive a bar.

    Returns:
        A summary of the files written.

    Raises:
        ValueError: On an invalid config (no images, tiny image size, unknown archive kind, negative seed).
        FileExistsError: If ``dest`` is non-empty and ``overwrite`` is false.
        NotADirectoryError: If ``dest`` is a file.
    """
    _validate(config)
    dest = _prepare_dest(Path(config.dest), config.overwrite)
    plan = make_plan(config.seed, config.images, config.quirks)
    started = time.monotonic()
    shards = _write_shards(config, dest, plan, progress)
    log.info("synth: %d images in %.1f s", config.images, time.monotonic() - started)
    names = [r.name for r in plan.records]
    texts = {
        DATA_ENTRY_2017: metadata.data_entry_text(plan, config.quirks),
        BBOX_LIST: metadata.bbox_text(plan.boxes),
        TRAIN_VAL_LIST: metadata.list_text([n for n in names if n not in plan.test]),
        TEST_LIST: metadata.list_text([n for n in names if n in plan.test]),
    }
    for file_name, text in texts.items():
        archives.write_text(dest / file_name, text)
    files = sorted([name for name, _ in shards] + list(texts))
    patients = len({r.patient for r in plan.records})
    return SynthSummary(dest, config.images, patients, shards, files, dict(plan.quirks))


def _validate(config: SynthConfig) -> None:
    if config.images < 1:
        raise UsageError(f"images must be at least 1, got {config.images}")
    if config.image_size < 16:
        raise UsageError(f"image_size must be at least 16, got {config.image_size}")
    if config.archive not in ("zip", "tar.gz"):
        raise UsageError(f"archive must be 'zip' or 'tar.gz', got {config.archive!r}")
    if config.seed < 0:
        raise UsageError(f"seed must be non-negative, got {config.seed}")
    if config.workers < 0:
        raise UsageError(f"workers must be 0 (auto) or more, got {config.workers}")


def _prepare_dest(dest: Path, overwrite: bool) -> Path:
    """Create ``dest`` or check it may be written; with ``overwrite``, remove earlier dataset files."""
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"destination {dest} is a file; pass an empty or new directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"destination {dest} is not empty; pass an empty or new directory (or set overwrite=True)"
            )
        for name in _DATASET_FILES:
            (dest / name).unlink(missing_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def _workers(config: SynthConfig) -> int:
    if config.workers:
        return config.workers
    return min(2, os.cpu_count() or 1) if config.images >= POOL_MIN_IMAGES else 1


def _image_stream(config: SynthConfig, plan: metadata.Plan) -> Generator[bytes]:
    """PNG bytes of every image in name order, rendered in this process or in a pool (same bytes)."""
    tasks = [(i, plan.modes.get(i, "L")) for i in range(len(plan.records))]
    workers = _workers(config)
    if workers == 1:
        film = images.factory(config.seed, config.image_size)
        yield from (film.png(*task) for task in tasks)
        return
    context = multiprocessing.get_context("spawn")
    init_args = (config.seed, config.image_size)
    with context.Pool(workers, initializer=images.init_worker, initargs=init_args) as pool:
        yield from pool.imap(images.render_task, tasks, chunksize=4)


def _write_shards(
    config: SynthConfig, dest: Path, plan: metadata.Plan, progress: Callable[[int], None] | None
) -> list[tuple[str, int]]:
    """Stream the images into the shards; return (name, count) of each non-empty shard."""
    counts = archives.shard_counts(len(plan.records))
    names = archives.shard_names(config.archive)
    meter = _Meter(len(plan.records))
    written: list[tuple[str, int]] = []
    records = iter(plan.records)
    with contextlib.closing(_image_stream(config, plan)) as stream:
        for shard_name, count in zip(names, counts, strict=True):
            if count == 0:
                continue
            with archives.open_shard(dest / shard_name, config.archive) as add:
                for record, png in zip(itertools.islice(records, count), stream, strict=False):
                    add(record.name, png)
                    meter.tick()
                    if progress is not None:
                        progress(1)
            written.append((shard_name, count))
            log.debug("synth: wrote %s (%d images)", shard_name, count)
    return written


class _Meter:
    """Throttled progress log lines with the image rate."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = self.last = time.monotonic()

    def tick(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_SECONDS or self.done == self.total:
            rate = self.done / max(now - self.started, 1e-9)
            log.info("synth: %d/%d images (%.1f images/s)", self.done, self.total, rate)
            self.last = now
