"""End-of-run accounting: nothing is silently dropped and every published image is the bytes it claims.

Checked by :func:`pipeline.publish.finish.finish` before the manifest is written (a mismatch fails the run and
publishes nothing):

* every input image (each row of the raw manifests of the run's shards) is published or quarantined;
* every Data_Entry row is published, explained by its image's quarantine row, or absent from the source (subset);
* every row of every annotation layer file is in its layer's table, quarantined, or absent from the source;
* every published image appears exactly once in the Parquet files, with the ``sha256`` its row in
  ``metadata.parquet`` has (the Parquet files' ``image_index`` and ``sha256`` columns, read by ranged GETs: a few
  KB per row group, no pixels), and each WebDataset shard holds as many samples as its unit's Parquet files.

No pixel is read back: each image's SHA-256 was computed from the bytes its unit wrote into both formats, and
every written file was checked against the checksum the store verified at upload
(:func:`pipeline.publish.verify.verify_uploads`). ``cxr verify`` re-reads every byte of a published release.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import AccountingError
from pipeline.plan.planning import Plan, load_raw_images
from pipeline.store import layout
from pipeline.store.layout import run_prefix
from pipeline.store.storage import Store
from pipeline.store.tables import get_frame, iter_row_groups

#: Parquet files whose name and digest columns are read at a time.
READ_WORKERS = 8
#: Quarantine reason codes that stand for an input image (the others are boxes and split-list entries).
IMAGE_CODES = (
    "rejected_at_extraction",
    "not_an_image_name",
    "duplicate_image",
    "image_without_row",
    "image_in_no_split_list",
    "undecodable_image",  # found at conversion (pipeline.convert.pool.UNDECODABLE)
)


@dataclass(frozen=True)
class Accounting:
    """The figures of one run (recorded in the manifest under ``accounting``)."""

    input_images: int
    published_images: int
    quarantined_images: int
    data_entry_rows: int
    rows_published: int
    rows_with_quarantined_image: int
    rows_absent_from_source: int
    parquet_images_checked: int
    webdataset_images_checked: int
    layer_rows: int = 0
    layer_rows_published: int = 0
    layer_rows_quarantined: int = 0
    layer_rows_absent_from_source: int = 0

    def to_dict(self) -> dict[str, int]:
        """Return a JSON-able dict."""
        return asdict(self)


def _digests_in_parquet(store: Store, entry: dict[str, Any]) -> pa.Table:
    """The ``image_index`` and ``sha256`` columns of one release Parquet file (ranged reads of those two only)."""
    columns = ["image_index", "sha256"]
    parts = list(iter_row_groups(store, str(entry["path"]), columns, int(entry["size"])))
    return (
        pa.concat_tables(parts).select(columns) if parts else pa.table({c: pa.array([], pa.string()) for c in columns})
    )


def _unit_of(entry: dict[str, Any]) -> str:
    """The unit a release file belongs to (``train-000003`` for its tar and each of its Parquet files)."""
    stem = str(entry["path"]).rsplit("/", 1)[-1].split(".", 1)[0]
    return stem if entry["kind"] == "wds" else stem.rsplit("-", 1)[0]


def _tar_counts(files: list[dict[str, Any]], parquet_rows: Counter[str]) -> tuple[int, list[str]]:
    """Samples in the WebDataset shards (as their writers counted them), and each shard whose count differs from
    the rows of its unit's Parquet files or unit with Parquet rows and no shard."""
    shards = [f for f in files if f["kind"] == "wds"]
    wrong = [
        f"{f['path']} ({f['rows']} samples, {parquet_rows[_unit_of(f)]} Parquet rows)"
        for f in shards
        if int(f["rows"]) != parquet_rows[_unit_of(f)]
    ]
    without = sorted(set(parquet_rows) - {_unit_of(f) for f in shards})
    wrong += [f"unit {unit} ({parquet_rows[unit]} Parquet rows, no WebDataset shard)" for unit in without]
    return sum(int(f["rows"]) for f in shards), wrong


def _examples(names: pa.Array | pa.ChunkedArray) -> list[str]:
    """The first three names in order (for an error message: only on the failing path)."""
    return sorted(str(n) for n in pc.unique(names).to_pylist())[:3]


def check_digests(expected: pa.Table, found: pa.Table, where: str) -> int:
    """Raise :class:`AccountingError` unless ``found`` (``image_index`` and ``sha256`` of every row of the files, in
    any order) holds each image of ``expected`` exactly once with its digest; return how many it holds.

    Columnar (Arrow compute, no Python object per row): a copy with the wrong digest is found even when a right
    copy of the same image is there too, and so is an image held twice.
    """
    names, want = found.column("image_index"), expected.column("image_index")
    counts = pc.value_counts(names)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    missing = want.filter(pc.invert(pc.is_in(want, value_set=names)))
    extra = names.filter(pc.invert(pc.is_in(names, value_set=want)))
    both = found.join(expected, "image_index", join_type="inner", right_suffix="_expected")
    differs = pc.fill_null(pc.not_equal(both.column("sha256"), both.column("sha256_expected")), True)
    wrong = pc.unique(both.column("image_index").filter(differs))
    if len(missing) or len(extra) or len(wrong) or len(repeated):
        raise AccountingError(
            f"the {where} do not hold exactly the published images: {len(missing)} missing (e.g. "
            f"{_examples(missing)}), {len(pc.unique(extra))} unexpected (e.g. {_examples(extra)}), {len(wrong)} whose "
            f"sha256 differs from metadata.parquet's (e.g. {_examples(wrong)}), {len(repeated)} held more than once "
            f"(e.g. {_examples(repeated)}); nothing was published"
        )
    return len(names)


def _layer_figures(plan: Plan, files: list[dict[str, Any]], quarantine: pd.DataFrame) -> dict[str, int]:
    """Rows of the layer files, and where they went: the layers' tables, the quarantine, not in this source."""
    tables = {f"annotations/{layer['id']}.parquet" for layer in plan.layers}
    published = sum(int(f["rows"]) for f in files if str(f["path"]).split("/", 2)[-1] in tables)
    codes = quarantine["reason_code"] if len(quarantine) else pd.Series([], dtype="str")
    return {
        "layer_rows": sum(int(f["rows"]) for layer in plan.layers for f in layer["files"]),
        "layer_rows_published": published,
        "layer_rows_quarantined": int(codes.astype("str").str.startswith("layer_row").sum()),
        "layer_rows_absent_from_source": int(plan.subset.get("layer_rows", 0)),
    }


def _layer_problems(figures: Accounting) -> list[str]:
    out = figures.layer_rows_published + figures.layer_rows_quarantined + figures.layer_rows_absent_from_source
    if figures.layer_rows == out:
        return []
    return [
        f"{figures.layer_rows} annotation layer rows != {figures.layer_rows_published} in the layers' tables + "
        f"{figures.layer_rows_quarantined} quarantined + {figures.layer_rows_absent_from_source} absent from the source"
    ]


def _figures(
    store: Store, plan: Plan, published: pd.Series, files: list[dict[str, Any]], quarantine: pd.DataFrame
) -> Accounting:
    """The run's figures (the digest counts still 0); the raw manifests and Data_Entry are let go on return."""
    raw = load_raw_images(store, plan.sources.get("archives_sha256", {}))  # exactly the archives the plan used
    entry = get_frame(store, f"{run_prefix(plan.run_id)}/data_entry.parquet")
    image_rows = quarantine[quarantine["reason_code"].isin(IMAGE_CODES)] if len(quarantine) else quarantine
    quarantined = image_rows["image_index"] if len(image_rows) else pd.Series([], dtype="str")
    names = entry["image_index"].astype("str")
    in_release = names.isin(published)
    return Accounting(
        input_images=len(raw),
        published_images=len(published),
        quarantined_images=len(image_rows),
        data_entry_rows=len(entry),
        rows_published=int(in_release.sum()),
        rows_with_quarantined_image=int((names.isin(quarantined) & ~in_release).sum()),
        rows_absent_from_source=int((~names.isin(raw["image_index"])).sum()),
        parquet_images_checked=0,
        webdataset_images_checked=0,
        **_layer_figures(plan, files, quarantine),
    )


def check(
    store: Store, plan: Plan, meta: pd.DataFrame, files: list[dict[str, Any]], quarantine: pd.DataFrame | None = None
) -> Accounting:
    """Check the run's accounting (see the module doc); raise :class:`AccountingError` on any mismatch.

    ``quarantine`` is the release's whole quarantine (the plan's and conversion's rows); by default the plan's.
    """
    if quarantine is None:
        quarantine = get_frame(store, layout.quarantine_key(plan.run_id))
    figures = _figures(store, plan, meta["image_index"], files, quarantine)
    repeated = sorted(meta["image_index"][meta["image_index"].duplicated()].astype("str").unique().tolist())
    problems = _layer_problems(figures)
    if repeated:
        problems.append(f"{len(repeated)} image(s) published twice (e.g. {repeated[:3]})")
    if figures.input_images != figures.published_images + figures.quarantined_images:
        problems.append(
            f"{figures.input_images} input images != {figures.published_images} published + "
            f"{figures.quarantined_images} quarantined"
        )
    rows_out = figures.rows_published + figures.rows_with_quarantined_image + figures.rows_absent_from_source
    if figures.data_entry_rows != rows_out or figures.rows_published != figures.published_images:
        problems.append(
            f"{figures.data_entry_rows} Data_Entry rows != {figures.rows_published} published + "
            f"{figures.rows_with_quarantined_image} with a quarantined image + "
            f"{figures.rows_absent_from_source} absent from the source ({figures.published_images} images published)"
        )
    if sum(plan.counts.values()) != figures.published_images:
        problems.append(f"plan counts {plan.counts} but {figures.published_images} rows in metadata.parquet")
    if problems:
        joined = "; ".join(problems)
        raise AccountingError(f"release {plan.version}: accounting failed, nothing was published: {joined}")
    expected = pa.table({c: pa.array(meta[c], pa.string()) for c in ("image_index", "sha256")})
    parquet_files = [f for f in files if f["kind"] == "parquet" and "/parquet/split=" in str(f["path"])]
    with ThreadPoolExecutor(max_workers=READ_WORKERS, thread_name_prefix="accounting") as pool:
        found = list(pool.map(lambda f: _digests_in_parquet(store, f), parquet_files))
    parquet_rows = Counter[str]()
    for entry_file, table in zip(parquet_files, found, strict=True):
        parquet_rows[_unit_of(entry_file)] += table.num_rows
    parquet_checked = check_digests(
        expected, pa.concat_tables(found) if found else expected.slice(0, 0), "Parquet files"
    )
    tars_checked, wrong_tars = _tar_counts(files, parquet_rows)
    if wrong_tars:
        raise AccountingError(
            f"release {plan.version}: the WebDataset shards hold {tars_checked} samples for {parquet_checked} "
            f"Parquet rows: {'; '.join(wrong_tars[:3])}; nothing was published"
        )
    checked = {"parquet_images_checked": parquet_checked, "webdataset_images_checked": tars_checked}
    return Accounting(**{**figures.to_dict(), **checked})
