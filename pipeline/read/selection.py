"""Selections: the images of a release a reader should see (a split, views, findings, one per patient, a filter).

A :class:`Selection` is resolved once, on ``metadata.parquet`` (no pixels, cheap), into image ids; every reader of
:class:`pipeline.read.client.Release` takes one wherever it takes a split::

    pa_only = release.select("train", views=["PA"], findings=["effusion"], unique_patients="first")
    len(pa_only)                                   # images selected
    release.to_pandas(pa_only, image="small")      # their rows with the 256 px PNG in ``image_small``
    release.dataset(pa_only)                       # a pyarrow dataset already filtered to them
    keys = pa_only.keys()                          # WebDataset: .select(lambda s: s["__key__"] in keys)

Labels are spelled as their columns (``pleural_thickening``); NIH's spelling (``Pleural_Thickening``, ``No
Finding``) and the card's (``Pleural Thickening``) map to it with :func:`pipeline.nih.finding_column`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import nih
from pipeline.errors import UsageError
from pipeline.plan.split import SPLITS

if TYPE_CHECKING:
    from pipeline.read.client import Release

__all__ = [
    "IMAGE_COLUMNS",
    "VIEWS",
    "Selection",
    "apply_filter",
    "check_filter",
    "check_split",
    "image_column",
    "label_columns",
    "read_rows",
    "resolve",
    "select",
    "split_of",
]

#: The view positions NIH records (``view_position``).
VIEWS: tuple[str, ...] = ("PA", "AP")
#: ``image=`` of the readers: which Parquet column (and WebDataset member) holds the pixels.
IMAGE_COLUMNS: dict[str, str] = {"full": "image", "small": "image_small"}
#: What ``unique_patients=`` accepts besides False.
UNIQUE_PATIENTS = ("first",)


@dataclass(frozen=True)
class Selection:
    """Images of a release: one split (or all, ``split=None``) and the image ids chosen in it.

    Attributes:
        split: ``train``, ``val``, ``test``, or None for every split.
        image_ids: The chosen ids in metadata order (split, then image id); None means every image of the split.
        expression: An extra pyarrow filter over the rows' columns, for a selection built by hand;
            :meth:`pipeline.read.client.Release.selection` resolves it into ``image_ids`` (on the metadata).
        whole_split: Whether ``image_ids`` are every image of the split (readers then need no filter at all).
    """

    split: str | None
    image_ids: tuple[str, ...] | None = field(default=None, repr=False)
    expression: pc.Expression | None = field(default=None, compare=False)  # unhashable: left out of eq and hash
    whole_split: bool = False

    def filter_expression(self) -> pc.Expression | None:
        """The pyarrow filter that keeps exactly these images (None: every row of the split).

        ``release.dataset(selection.split).to_table(filter=selection.filter_expression())`` reads them.
        """
        parts = [] if self.whole_split or self.image_ids is None else [_id_in(self.image_ids)]
        if self.expression is not None:
            parts.append(self.expression)
        if not parts:
            return None
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part
        return combined

    def keys(self) -> frozenset[str] | None:
        """The chosen image ids (WebDataset's ``__key__``), or None when every image of the split is chosen.

        With WebDataset: ``wds.WebDataset(release.shard_urls(sel)).select(lambda s: s["__key__"] in keys)``
        (the shards of the split are still read whole; only the selected samples come out).
        """
        if self.image_ids is None:
            if self.expression is not None:
                raise UsageError("this selection is a filter not yet resolved to images: use release.selection(it)")
            return None
        return frozenset(self.image_ids)

    def __len__(self) -> int:
        """The number of images selected."""
        if self.image_ids is None:
            raise UsageError(f"{self!r} is not resolved to images: use release.selection(it), then len()")
        return len(self.image_ids)

    def __bool__(self) -> bool:
        """False only for a selection of no image (an unresolved one stands for images still to be chosen)."""
        return self.image_ids is None or bool(self.image_ids)

    def __repr__(self) -> str:
        count = "unresolved" if self.image_ids is None else f"{len(self.image_ids)} images"
        extra = ", filtered" if self.expression is not None else ""
        return f"Selection(split={self.split!r}, {count}{extra})"


def _id_in(image_ids: tuple[str, ...]) -> pc.Expression:
    """``image_id`` in these ids (typed, so that an empty selection filters every row out)."""
    return pc.field("image_id").isin(pa.array(image_ids, pa.string()))


def check_split(split: str | None) -> None:
    """Refuse a split name that is not ``train``, ``val`` or ``test`` (None: every split).

    Raises:
        UsageError: an unknown split (the message names the splits).
    """
    if split is not None and split not in SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(SPLITS)}")


def image_column(image: str) -> str:
    """The column of ``image="full"`` (``image``) or ``image="small"`` (``image_small``, the 256 px PNG).

    Raises:
        UsageError: any other value.
    """
    if image not in IMAGE_COLUMNS:
        raise UsageError(f"image={image!r}: use 'full' (the PNG as published) or 'small' (the 256 px copy)")
    return IMAGE_COLUMNS[image]


def check_filter(expression: Any, what: str = "filter") -> pc.Expression | None:
    """Return ``expression`` if it is a pyarrow compute expression (or None).

    Raises:
        UsageError: anything else (a string, a pandas mask, a dict...).
    """
    if expression is None or isinstance(expression, pc.Expression):
        return expression
    raise UsageError(
        f"{what}= takes a pyarrow compute expression, e.g. pyarrow.compute.field('age_years') >= 18; "
        f"got {type(expression).__name__}"
    )


def apply_filter(table: pa.Table, expression: pc.Expression, what: str) -> pa.Table:
    """``table.filter(expression)``, a wrong column or type said as a :class:`UsageError` naming ``what``."""
    try:
        return table.filter(expression)
    except (pa.ArrowException, TypeError) as exc:
        raise UsageError(
            f"cannot filter {what} with {expression}: {str(exc).splitlines()[0]}; its columns: "
            f"{', '.join(table.column_names)}"
        ) from None


def label_columns(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The 15 label columns in the manifest's ``label_vector_order`` (older releases: NIH's order)."""
    if manifest.get("label_columns"):
        return tuple(str(c) for c in manifest["label_columns"])
    return tuple(nih.finding_column(str(label)) for label in manifest.get("label_vector_order") or nih.LABELS)


def _label_column(name: str, allowed: Sequence[str]) -> str:
    column = nih.finding_column(str(name))
    if column not in allowed:
        raise UsageError(f"finding {name!r} is not a label of this release; use one of {', '.join(allowed)}")
    return column


def _as_list(value: str | Iterable[str], what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise UsageError(f"{what}=[] selects nothing; leave {what} out (None) to keep every image")
    return items


def _conditions(
    manifest: dict[str, Any], views: str | Iterable[str] | None, findings: str | Iterable[str] | None
) -> list[pc.Expression]:
    """The view and finding conditions (each a pyarrow expression over the metadata)."""
    found: list[pc.Expression] = []
    if views is not None:
        wanted = _as_list(views, "views")
        unknown = [v for v in wanted if v not in VIEWS]
        if unknown:
            raise UsageError(f"views {unknown} are not view positions of NIH; use {' or '.join(VIEWS)}")
        found.append(pc.field("view_position").isin(wanted))
    if findings is not None:
        columns = [_label_column(f, label_columns(manifest)) for f in _as_list(findings, "findings")]
        any_of = pc.field(columns[0])
        for column in columns[1:]:
            any_of = any_of | pc.field(column)
        found.append(any_of)
    return found


def _first_per_patient(table: pa.Table) -> pa.Table:
    """Each patient's first image among ``table``'s rows (lowest ``patient_order``, else ``follow_up``, then
    ``image_index``), in ``table``'s order."""
    keys = [k for k in ("patient_order", "follow_up", "image_index") if k in table.column_names]
    ranked = table.select(["patient_id", *keys]).append_column("__row", pa.array(np.arange(table.num_rows)))
    ordered = ranked.sort_by([("patient_id", "ascending"), *[(k, "ascending") for k in keys]])
    patients = ordered.column("patient_id").to_numpy()
    starts = np.flatnonzero(np.r_[True, patients[1:] != patients[:-1]]) if len(patients) else np.array([], int)
    rows = np.sort(ordered.column("__row").to_numpy()[starts])
    return table.take(pa.array(rows, pa.int64()))


def select(
    metadata: pa.Table,
    manifest: dict[str, Any],
    split: str | None = None,
    *,
    views: str | Iterable[str] | None = None,
    findings: str | Iterable[str] | None = None,
    unique_patients: bool | str = False,
    where: pc.Expression | None = None,
) -> Selection:
    """Choose images on a release's metadata (what :meth:`pipeline.read.client.Release.select` does).

    The conditions combine with "and"; ``unique_patients`` applies last, to the rows the others kept.

    Args:
        metadata: The release's ``metadata.parquet`` table.
        manifest: The release's manifest (its label columns).
        split: ``train``, ``val``, ``test``, or None for every split.
        views: View positions to keep (``["PA"]``, ``["PA", "AP"]``).
        findings: Keep images with any of these labels: column names (``pleural_thickening``, ``no_finding``)
            or NIH's spellings (``Pleural_Thickening``, ``No Finding``).
        unique_patients: ``"first"`` keeps each patient's first image among the rows chosen (the lowest
            ``patient_order``, else ``follow_up``, then ``image_index``); False keeps every image.
        where: A pyarrow expression over the metadata's columns (``pc.field("age_years") >= 18``).

    Raises:
        UsageError: an unknown split, view, finding or ``unique_patients`` value, or a ``where`` that is no
            expression or names a column the metadata lacks.
    """
    check_split(split)
    if unique_patients not in (False, *UNIQUE_PATIENTS):
        raise UsageError(f"unique_patients={unique_patients!r}: use False (every image) or 'first'")
    conditions = _conditions(manifest, views, findings)
    if split is not None:
        conditions.insert(0, pc.field("split") == split)
    if (expression := check_filter(where, "where")) is not None:
        conditions.append(expression)
    table = metadata
    for condition in conditions:
        table = apply_filter(table, condition, "the release's metadata")
    if unique_patients == "first":
        table = _first_per_patient(table)
    ids = tuple(str(i) for i in table.column("image_id").to_pylist())
    whole = table.num_rows == _split_rows(metadata, split)
    return Selection(split, ids, whole_split=whole)


def _split_rows(metadata: pa.Table, split: str | None) -> int:
    if split is None:
        return int(metadata.num_rows)
    return int(pc.sum(pc.equal(metadata.column("split"), split)).as_py() or 0)


def resolve(metadata: pa.Table, manifest: dict[str, Any], chosen: str | Selection | None) -> Selection:
    """A split name, None (every split) or a selection, as a :class:`Selection` with its image ids.

    Raises:
        UsageError: neither a split name, None nor a :class:`Selection`; an unknown split.
    """
    if not isinstance(chosen, Selection):
        return select(metadata, manifest, split_of(chosen))
    if chosen.image_ids is not None and chosen.expression is None:
        return chosen
    base = select(metadata, manifest, chosen.split, where=chosen.expression)
    if chosen.image_ids is None:
        return base
    wanted = set(chosen.image_ids)
    ids = tuple(i for i in base.image_ids or () if i in wanted)
    return Selection(chosen.split, ids)


def split_of(chosen: str | Selection | None) -> str | None:
    """The split a split name, selection or None (every split) reads from.

    Raises:
        UsageError: an unknown split, or neither a split name, None nor a :class:`Selection`.
    """
    if isinstance(chosen, Selection):
        return chosen.split
    if chosen is not None and not isinstance(chosen, str):
        raise UsageError(
            f"expected a split name ({', '.join(SPLITS)}), None or a Selection (release.select(...)); "
            f"got {type(chosen).__name__}"
        )
    check_split(chosen)
    return chosen


def read_rows(
    release: Release,
    chosen: str | Selection | None,
    columns: list[str] | None,
    expression: pc.Expression | None,
    image: str | None,
) -> pa.Table:
    """The rows of a split or selection (see :meth:`pipeline.read.client.Release.table`): from the metadata, or
    from the Parquet parts when a pixel column is asked for (by ``image`` or in ``columns``).

    Raises:
        UsageError: an unknown split, column or ``image`` value, or a filter over columns the rows lack.
    """
    pixels = set(IMAGE_COLUMNS.values())
    wanted = list(columns) if columns is not None else None
    if image is not None and wanted is not None and image_column(image) not in wanted:
        wanted.append(image_column(image))
    if image is None and not pixels & set(wanted or ()):
        return _metadata_rows(release, chosen, wanted, expression)
    dataset = release.dataset(chosen)
    if wanted is None:
        wanted = [name for name in dataset.schema.names if name not in pixels] + [image_column(str(image))]
    try:
        return dataset.to_table(columns=wanted, filter=expression)
    except (pa.ArrowException, TypeError) as exc:
        raise UsageError(
            f"cannot read {wanted} of release {release.version}'s Parquet parts: {str(exc).splitlines()[0]}; "
            f"their columns: {', '.join(dataset.schema.names)}"
        ) from None


def _metadata_rows(
    release: Release, chosen: str | Selection | None, columns: list[str] | None, expression: pc.Expression | None
) -> pa.Table:
    """The metadata rows of a split or selection, filtered by ``expression``, with ``columns`` (None: all)."""
    table = release.metadata()
    if (split := split_of(chosen)) is not None:
        table = table.filter(pc.field("split") == split)
    if isinstance(chosen, Selection) and (rows := release.selection(chosen).filter_expression()) is not None:
        table = table.filter(rows)
    if expression is not None:
        table = apply_filter(table, expression, f"release {release.version}'s metadata")
    unknown = [c for c in columns or () if c not in table.column_names]
    if unknown:
        raise UsageError(f"release {release.version} has no columns {unknown}; its columns: {table.column_names}")
    return table.select(columns) if columns else table
