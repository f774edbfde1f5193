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


def _digests_in_parquet(store: Store, entry: dict[str, Any]) -> dict[str, str]:
    """``{image_index: sha256}`` of one release Parquet file, from those two columns only (ranged reads)."""
    rel = str(entry["path"])
    found: dict[str, str] = {}
    for table in iter_row_groups(store, rel, ["image_index", "sha256"], int(entry["size"])):
        for name, digest in zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True):
            if name in found:
                raise AccountingError(f"image {name} appears twice in the Parquet files ({rel})")
            found[str(name)] = str(digest)
    return found


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


class _DigestTally:
    """What the published files hold against what ``metadata.parquet`` says, folded in one file at a time (only the
    expected digests and the names seen are kept, not every file's digests at once)."""

    def __init__(self, expected: dict[str, str]) -> None:
        self.expected = expected
        self.seen: set[str] = set()
        self.extra: list[str] = []
        self.wrong: list[str] = []

    def add(self, found: dict[str, str]) -> None:
        """Fold in one file's ``{name: sha256}`` (a name seen in an earlier file counts once, as before)."""
        for name, digest in found.items():
            want = self.expected.get(name)
            if want is None:
                if name not in self.seen:
                    self.extra.append(name)
            elif want != digest:
                self.wrong.append(name)
            self.seen.add(name)

    def check(self, where: str) -> int:
        """Raise :class:`AccountingError` unless the files held exactly the expected images; return how many."""
        missing = sorted(name for name in self.expected if name not in self.seen)
        extra, wrong = sorted(set(self.extra)), sorted(set(self.wrong))
        if missing or extra or wrong:
            raise AccountingError(
                f"the {where} do not hold exactly the published images: {len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(extra)} unexpected (e.g. {extra[:3]}), {len(wrong)} whose sha256 differs from "
                f"metadata.parquet's (e.g. {wrong[:3]}); nothing was published"
            )
        return len(self.seen)


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


def check(
    store: Store, plan: Plan, meta: pd.DataFrame, files: list[dict[str, Any]], quarantine: pd.DataFrame | None = None
) -> Accounting:
    """Check the run's accounting (see the module doc); raise :class:`AccountingError` on any mismatch.

    ``quarantine`` is the release's whole quarantine (the plan's and conversion's rows); by default the plan's.
    """
    prefix = run_prefix(plan.run_id)
    raw = load_raw_images(store, plan.sources.get("archives_sha256", {}))  # exactly the archives the plan used
    if quarantine is None:
        quarantine = get_frame(store, layout.quarantine_key(plan.run_id))
    entry = get_frame(store, f"{prefix}/data_entry.parquet")
    published = Counter(str(name) for name in meta["image_index"])
    repeated = sorted(name for name, n in published.items() if n > 1)
    image_rows = quarantine[quarantine["reason_code"].isin(IMAGE_CODES)] if len(quarantine) else quarantine
    present, quarantined_names = set(raw["image_index"]), set(image_rows["image_index"]) if len(image_rows) else set()
    names = entry["image_index"].astype("str")
    figures = Accounting(
        input_images=len(raw),
        published_images=len(meta),
        quarantined_images=len(image_rows),
        data_entry_rows=len(entry),
        rows_published=int(names.isin(set(published)).sum()),
        rows_with_quarantined_image=int((names.isin(quarantined_names) & ~names.isin(set(published))).sum()),
        rows_absent_from_source=int((~names.isin(present)).sum()),
        parquet_images_checked=0,
        webdataset_images_checked=0,
        **_layer_figures(plan, files, quarantine),
    )
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
    expected = {str(k): str(v) for k, v in zip(meta["image_index"], meta["sha256"], strict=True)}
    in_parquet, parquet_rows = _DigestTally(expected), Counter[str]()
    parquet_files = [f for f in files if f["kind"] == "parquet" and "/parquet/split=" in str(f["path"])]
    with ThreadPoolExecutor(max_workers=READ_WORKERS, thread_name_prefix="accounting") as pool:
        read = pool.map(lambda f: _digests_in_parquet(store, f), parquet_files)
        for entry_file, found in zip(parquet_files, read, strict=True):
            in_parquet.add(found)
            parquet_rows[_unit_of(entry_file)] += len(found)
    parquet_checked = in_parquet.check("Parquet files")
    tars_checked, wrong_tars = _tar_counts(files, parquet_rows)
    if wrong_tars:
        raise AccountingError(
            f"release {plan.version}: the WebDataset shards hold {tars_checked} samples for {parquet_checked} "
            f"Parquet rows: {'; '.join(wrong_tars[:3])}; nothing was published"
        )
    checked = {"parquet_images_checked": parquet_checked, "webdataset_images_checked": tars_checked}
    return Accounting(**{**figures.to_dict(), **checked})
