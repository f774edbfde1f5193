"""A map-style PyTorch dataset over a release's Parquet files, read row group by row group.

    from torch.utils.data import DataLoader
    from pipeline.read.torchdata import ReleaseDataset, resumable_sampler

    data = ReleaseDataset(release, "train", image="small")  # what release.torch_dataset("train", image="small") gives
    sampler = resumable_sampler(data, seed=7, epoch=0, start=0, batch_size=32, num_workers=2)  # start: resume
    loader = DataLoader(data, batch_size=32, sampler=sampler, num_workers=2)  # start = batches_done * batch_size

Owns the index (each selected image's Parquet file, row group and row: from the manifest's ``row_groups``, or for
older releases from each file's ``image_id`` column) and the per-process row-group cache; the order is
:mod:`pipeline.read.sampler`'s (re-exported here). Building the dataset reads the metadata only (no pixels); an
item reads the row group holding it (``image_id`` and one pixel column) into a small LRU cache that each process
opens for itself, and a batch's images are decoded by a few threads of that process. The dataset holds the
store's settings and plain arrays only, so a ``DataLoader`` may fork or pickle it into its workers.

PyTorch is imported at module level (a ``Dataset`` subclass needs it); :mod:`pipeline` imports this module only
lazily (in ``Release.torch_dataset``), so the reader works without torch.
"""

from __future__ import annotations

import io
import logging
import operator
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from PIL import Image

from pipeline.config import StoreConfig
from pipeline.errors import UsageError, VerifyError
from pipeline.plan.split import SPLITS
from pipeline.png import decode_gray8
from pipeline.read.client import Release
from pipeline.read.sampler import ResumableSampler, resumable_sampler
from pipeline.read.selection import Selection, image_column, label_columns

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as exc:  # pragma: no cover - the consumers' extra installs torch
    raise UsageError("the PyTorch dataset needs PyTorch: pip install torch (in the `consumers` extra)") from exc

#: The sampler lives in its own module (re-exported here); ``decode_png`` is what each item is decoded with.
__all__ = ["ReleaseDataset", "ResumableSampler", "decode_png", "resumable_sampler"]

log = logging.getLogger(__name__)

#: Threads per process decoding a batch's images (see ``ReleaseDataset``'s ``decode_threads``).
DECODE_THREADS = 2
#: Where the items are: per image id, its row group (an index into the dataset's groups) and row in it.
_Places = dict[str, tuple[int, int]]


@dataclass
class _ProcessState:
    """What one process opens for itself: the filesystem, open Parquet files, the row-group cache (one fetch at a
    time: ``lock``), its counts, and the threads that decode a batch's images."""

    pid: int
    fs: pafs.S3FileSystem
    threads: ThreadPoolExecutor | None
    files: dict[int, pq.ParquetFile] = field(default_factory=dict)
    cache: OrderedDict[int, tuple[list[str], list[bytes | None]]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reads: int = 0
    hits: int = 0


class ReleaseDataset(Dataset[dict[str, Any]]):
    """The selected images of a release in (split, image_id) order, each read from its Parquet row group.

    Items are dicts: ``image_id`` (str); ``image``, the PNG decoded to a uint8 tensor of shape 1 x H x W (or what
    ``transform`` returns for that tensor); ``labels``, a float32 tensor named by :attr:`label_names`. With
    ``labels="nih"``: the 15 primary labels (1.0 or 0.0) in the manifest's ``label_vector_order``; with a layer id:
    the layer's boolean fields in its field order, NaN where it did not read a finding or does not cover the image.

    Args:
        release: The opened release.
        selection: A split name, a selection from ``release.select(...)``, or None for every image.
        image: ``full`` (column ``image``) or ``small`` (``image_small``, the 256 px copy).
        labels: ``nih`` or the id of one of the release's annotation layers.
        transform: Called with each image's uint8 tensor; its result is the item's ``image``.
        cache_row_groups: Row groups each process keeps (a row group holds about 32 MiB of full images).
        decode_threads: Threads decoding the images of a batch in each process (Pillow decodes outside the GIL),
            so that a process's cores stay busy while another ``DataLoader`` worker waits for the store. A
            ``transform`` runs in these threads too: give 1 for one that is not thread-safe.

    Raises:
        UsageError: an unknown split, image kind or layer, a layer without boolean fields, or a bad cache size or
            thread count.
        VerifyError: the Parquet files do not hold the images the metadata lists.
    """

    def __init__(self, release: Release, selection: Selection | str | None = None, *, image: str = "full",
                 labels: str = "nih", transform: Callable[[torch.Tensor], Any] | None = None,
                 cache_row_groups: int = 4, decode_threads: int = DECODE_THREADS) -> None:  # fmt: skip
        self._column = image_column(image)
        if cache_row_groups < 1:
            raise UsageError(f"cache_row_groups={cache_row_groups}: keep at least 1 row group per process")
        if decode_threads < 1:
            raise UsageError(f"decode_threads={decode_threads}: decode with at least 1 thread per process")
        self.version, self.image, self.transform = release.version, image, transform
        self.cache_row_groups, self.decode_threads = cache_row_groups, decode_threads
        self._config: StoreConfig = release.client.config
        metadata = release.metadata()
        chosen = _sorted(_select(release, selection, metadata))
        self.image_ids: list[str] = chosen.column("image_id").to_pylist()
        splits = sorted(set(chosen.column("split").to_pylist()), key=SPLITS.index)
        _check_small(release, image, splits)
        self.label_names, self._labels = _label_matrix(release, chosen, labels)
        self._files, self._groups, places = _index(release, metadata, splits)
        missing = [i for i in self.image_ids if i not in places]
        if missing:
            raise VerifyError(f"release {release.version}: {len(missing)} images of its metadata are in no Parquet "
                              f"file (first: {missing[0]}): run `cxr verify --release {release.version}`")  # fmt: skip
        self._group_of, self._row_of = np.array([places[i] for i in self.image_ids], dtype=np.int64).reshape(-1, 2).T
        self._state: _ProcessState | None = None
        log.info("torch dataset: %d images of release %s (%s, labels %s) in %d row groups of %d files", len(self),
                 self.version, image, labels, len(np.unique(self._group_of)), len(self._files))  # fmt: skip

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = operator.index(i)
        i += len(self) if i < 0 else 0
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} is outside this dataset of {len(self)} images")
        image_id, row = self.image_ids[i], int(self._row_of[i])
        ids, pixels = self._row_group(int(self._group_of[i]))
        if ids[row] != image_id:
            raise VerifyError(f"release {self.version}: its Parquet row holds {ids[row]} where the manifest puts "
                              f"{image_id}: run `cxr verify --release {self.version}`")  # fmt: skip
        data = pixels[row]
        if data is None:
            raise UsageError(f"image {image_id} has no small copy in release {self.version}: use image='full'")
        tensor = decode_png(data)
        image = tensor if self.transform is None else self.transform(tensor)
        return {"image_id": image_id, "image": image, "labels": torch.from_numpy(self._labels[i].copy())}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The items of one batch (what a ``DataLoader`` asks a worker for), decoded by this process's threads."""
        threads, n = self._process().threads, self.decode_threads
        if threads is None or len(indices) < 2:
            return [self[i] for i in indices]
        parts = list(threads.map(lambda k: [self[i] for i in indices[k::n]], range(n)))  # one task a thread
        return [parts[j % n][j // n] for j in range(len(indices))]

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without this process's open files and cache (each worker opens its own)."""
        return {**self.__dict__, "_state": None}

    def __repr__(self) -> str:
        return f"ReleaseDataset({self.version}: {len(self)} images, image={self.image!r}, labels {self.label_names})"

    @property
    def row_groups(self) -> np.ndarray:
        """Each item's row group (items stored together share the number): what a block order keeps together."""
        return self._group_of

    def cache_info(self) -> dict[str, int]:
        """This process's row-group reads, cache hits and row groups cached now."""
        state = self._state if self._state is not None and self._state.pid == os.getpid() else None
        if state is None:
            return {"reads": 0, "hits": 0, "cached": 0}
        return {"reads": state.reads, "hits": state.hits, "cached": len(state.cache)}

    def _process(self) -> _ProcessState:
        """This process's state, opened on its first use here (a forked or spawned worker starts anew)."""
        state = self._state
        if state is None or state.pid != os.getpid():
            threads = ThreadPoolExecutor(self.decode_threads) if self.decode_threads > 1 else None
            state = self._state = _ProcessState(os.getpid(), _filesystem(self._config), threads)
        return state

    def _row_group(self, group: int) -> tuple[list[str], list[bytes | None]]:
        """The ``image_id`` values and the PNGs of one row group, from this process's cache or the store (as Python
        lists: one conversion a row group, not one Arrow scalar an item)."""
        state = self._process()
        with state.lock:
            if group in state.cache:
                state.hits += 1
                state.cache.move_to_end(group)
                return state.cache[group]
            file, index = self._groups[group]
            if file not in state.files:
                state.files[file] = pq.ParquetFile(state.fs.open_input_file(self._files[file]))
            table = state.files[file].read_row_group(index, columns=["image_id", self._column])
            state.reads += 1
            state.cache[group] = (table.column(0).to_pylist(), table.column(1).to_pylist())
            while len(state.cache) > self.cache_row_groups:
                state.cache.popitem(last=False)
            return state.cache[group]


def _filesystem(config: StoreConfig) -> pafs.S3FileSystem:
    """A pyarrow filesystem on the store, as ``ReleaseClient.filesystem`` makes it (opened in each process)."""
    return pafs.S3FileSystem(access_key=config.access_key_id, secret_key=config.secret_access_key,
                             region=config.region, endpoint_override=config.endpoint_url)  # fmt: skip


def decode_png(data: bytes) -> torch.Tensor:
    """A PNG as a uint8 tensor of shape 1 x H x W (8-bit grayscale, as the release stores it): by
    :func:`pipeline.png.decode_gray8` (2.5-3.5x Pillow's speed for the small copy, 1.2x for a full image), or by Pillow
    for a PNG of another layout."""
    pixels = decode_gray8(data)
    if pixels is None:
        with Image.open(io.BytesIO(data)) as img:
            pixels = np.array(img if img.mode == "L" else img.convert("L"), dtype=np.uint8)
    return torch.from_numpy(pixels).unsqueeze(0)


def _select(release: Release, selection: Selection | str | None, metadata: pa.Table) -> pa.Table:
    """The metadata rows that a split name, a selection or None (every image) picks."""
    chosen = release.selection(selection)
    table = metadata if chosen.split is None else metadata.filter(pc.field("split") == chosen.split)
    if chosen.image_ids is not None and not chosen.whole_split:  # (an empty id list is no valid pyarrow filter)
        table = table.filter(pc.field("image_id").isin(pa.array(chosen.image_ids, pa.string())))
    return table if chosen.expression is None else table.filter(chosen.expression)


def _sorted(table: pa.Table) -> pa.Table:
    """Rows in (split in SPLITS order, image_id) order: the dataset's stable order."""
    rank = pc.index_in(table.column("split"), value_set=pa.array(list(SPLITS)))
    return table.append_column("_split_rank", rank).sort_by([("_split_rank", "ascending"), ("image_id", "ascending")])


def _check_small(release: Release, image: str, splits: Sequence[str]) -> None:
    """Refuse ``image="small"`` when the manifest says a split's small copies weigh nothing (none were made)."""
    sizes = release.manifest.get("image_bytes") or {}
    empty = [s for s in splits if image == "small" and s in sizes and not sizes[s].get("small")]
    if empty:
        raise UsageError(f"release {release.version} has no small copies in {', '.join(empty)}: use image='full'")


def _label_matrix(release: Release, table: pa.Table, labels: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The label names and an images x labels float32 matrix (NaN where a value is null)."""
    if labels == "nih":
        names = list(label_columns(release.manifest))
        missing = [n for n in names if n not in table.column_names]
        if missing:
            raise VerifyError(f"release {release.version}'s metadata lacks the label columns {', '.join(missing)}")
        columns = [table.column(n) for n in names]
    else:
        fields = release.layer_info(labels)["fields"]
        names = [f["name"] for f in fields if f["type"] in ("bool", "boolean")]
        if not names:
            found = ", ".join(f"{f['name']} ({f['type']})" for f in fields)
            raise UsageError(f"layer {labels!r} has no boolean fields to use as labels; its fields: {found}")
        struct, null = table.column(labels), pa.scalar(None, pa.bool_())
        columns = [pc.if_else(pc.is_valid(struct), pc.struct_field(struct, name), null) for name in names]
    matrix = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for k, column in enumerate(columns):
        matrix[:, k] = pc.cast(column, pa.float32()).to_numpy(zero_copy_only=False)
    return tuple(str(n) for n in names), matrix


def _index(
    release: Release, metadata: pa.Table, splits: Sequence[str]
) -> tuple[list[str], list[tuple[int, int]], _Places]:
    """The Parquet files of ``splits`` (pyarrow paths), their row groups ((file, index in it) each) and where
    each of their images is."""
    files: list[str] = []
    groups: list[tuple[int, int]] = []
    places: _Places = {}
    for split in splits:
        ids = np.sort(np.array(metadata.filter(pc.field("split") == split).column("image_id").to_pylist(), dtype=str))
        for entry in (f for f in release.files("parquet", split) if f["path"].startswith("parquet/")):
            path = release.client.store.uri(release.key(entry["path"])).removeprefix("s3://")
            files.append(path)
            found = _listed(entry, len(groups), ids)
            if found is None:
                log.debug("%s lists no usable row groups: reading its image ids", entry["path"])
                found = _scanned(release.client.filesystem(), path, len(groups))
            groups += [(len(files) - 1, k) for k in range(found[0])]
            places.update(found[1])
    return files, groups, places


def _listed(entry: dict[str, Any], base: int, ids: np.ndarray) -> tuple[int, _Places] | None:
    """Row groups as the manifest lists them, each holding the split's sorted ids from its first to its last; None
    when it lists none or a group's range does not hold its count of the metadata's ids."""
    places: _Places = {}
    listed = entry.get("row_groups") or []
    for k, group in enumerate(listed):
        lo, hi = np.searchsorted(ids, group["first"], "left"), np.searchsorted(ids, group["last"], "right")
        if hi - lo != group["rows"]:
            return None
        places.update((str(image_id), (base + k, row)) for row, image_id in enumerate(ids[lo:hi]))
    return (len(listed), places) if listed else None


def _scanned(fs: pafs.FileSystem, path: str, base: int) -> tuple[int, _Places]:
    """A file's row groups and where each id is, from its ``image_id`` column (releases before ``row_groups``)."""
    parquet = pq.ParquetFile(fs.open_input_file(path), pre_buffer=True)
    ids = parquet.read(columns=["image_id"]).column(0).to_pylist()
    places: _Places = {}
    offset = 0
    for k in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(k).num_rows
        places.update((str(image_id), (base + k, row)) for row, image_id in enumerate(ids[offset : offset + rows]))
        offset += rows
    return parquet.metadata.num_row_groups, places
