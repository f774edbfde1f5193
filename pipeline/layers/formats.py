"""Recognising an annotation layer file's format by its header, as the Data_Entry variants are recognised.

A layer file without a spec beside it is one of three formats, told apart by its header (column order free, names
in any case, spelled loosely as :func:`pipeline.curate.variants.loose_name` allows):

* ``label_version``: any Data_Entry variant (``DATA_ENTRY_VARIANTS``): ``Data_Entry_2017.csv``,
  ``Data_Entry_2017_v2020.csv``, Kaggle's ``sample_labels.csv``;
* ``expert_labels``: Google's 2019 radiologist-adjudicated labels of four findings (``EXPERT_VARIANTS``):
  ``Image Index``, any of the other Data_Entry columns, then ``Fracture``, ``Pneumothorax``, ``Airspace opacity``,
  ``Nodule or mass`` (each ``YES``/``NO``; also spelled ``Airspace Opacity``, ``Nodule/Mass``) and optionally
  ``Set Id`` (``test``/``val``);
* ``boxes``: any box-list variant (``BBOX_VARIANTS``).

Any other CSV is a generic layer, which needs a spec (:mod:`pipeline.layers.spec`); without one its header is an
:class:`~pipeline.errors.UnknownHeaderError` naming the file, the columns found, the formats known and the spec.
"""

from __future__ import annotations

import re

from pipeline.curate.reading import brief
from pipeline.curate.variants import BBOX_VARIANTS, DATA_ENTRY_VARIANTS, HeaderMatch, Variant, recognise, split_header
from pipeline.errors import UnknownHeaderError
from pipeline.layers.spec import spec_names

__all__ = [
    "EXPERT_COLUMNS",
    "EXPERT_VARIANTS",
    "FORMAT_VARIANTS",
    "SET_ID_COLUMN",
    "recognise_layer",
]

#: Google's expert finding columns: column role (the layer's field) -> the name messages give the column.
EXPERT_COLUMNS: dict[str, str] = {
    "fracture": "Fracture",
    "pneumothorax": "Pneumothorax",
    "airspace_opacity": "Airspace opacity",
    "nodule_or_mass": "Nodule or mass",
}
SET_ID_COLUMN = "Set Id"
_DATA_ENTRY_TOKENS: dict[str, tuple[str, ...]] = {
    k: v for variant in DATA_ENTRY_VARIANTS for k, v in variant.tokens.items()
}
_EXPERT_TOKENS: dict[str, tuple[str, ...]] = {
    "Fracture": ("fracture",),
    "Pneumothorax": ("pneumothorax",),
    "Airspace opacity": ("airspace_opacity",),
    "Nodule or mass": ("nodule_or_mass",),
    "Nodule/Mass": ("nodule_or_mass",),
    "Nodule and mass": ("nodule_or_mass",),
    SET_ID_COLUMN: ("set_id",),
}
EXPERT_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "google2019",
        {**_DATA_ENTRY_TOKENS, **_EXPERT_TOKENS},
        frozenset({"image_index", *EXPERT_COLUMNS}),
        "Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass,Set Id",
    ),
)
#: Each recognised format (a layer kind) and its header variants, in the order they are tried.
FORMAT_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "label_version": DATA_ENTRY_VARIANTS,
    "expert_labels": EXPERT_VARIANTS,
    "boxes": BBOX_VARIANTS,
}
_WHAT = {
    "label_version": "a label version: a Data_Entry file in any of its variants",
    "expert_labels": "Google's 2019 expert labels: Image Index, optionally the other Data_Entry columns, the four "
    "findings (YES/NO) and Set Id",
    "boxes": "a box list in any of its variants",
}
_CLOSEST = re.compile(r"; (closest variant .*?); known variants:", re.DOTALL)


def _kind_of(variant: Variant) -> str:
    return next(kind for kind, variants in FORMAT_VARIANTS.items() if variant in variants)


def _closest(exc: UnknownHeaderError) -> str:
    """The closest variant and what it lacks, as :func:`pipeline.curate.variants.recognise` worked it out."""
    found = _CLOSEST.search(str(exc))
    return f"; {found.group(1)}" if found else ""


def _unknown(header: list[str], source: str, exc: UnknownHeaderError) -> UnknownHeaderError:
    columns = [token for token in split_header(header) if token]
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    known = "\n".join(
        f"  {kind} ({_WHAT[kind]}), e.g. {' | '.join(v.example for v in variants)}"
        for kind, variants in FORMAT_VARIANTS.items()
    )
    specs = " or ".join(spec_names(name))
    return UnknownHeaderError(
        f"{source}: unknown annotation layer header; columns found: {brief(columns)}{_closest(exc)}. Formats known "
        f"(column order free, any case):\n{known}\nAny other CSV keyed by image file name is a generic layer: put a "
        f'spec beside it, {specs}, naming its columns: {{"id_column": "<column of image names>", "labels": '
        '{"<column>": {"type": "boolean", "true": ["1"], "false": ["0"]}}}'
    )


def recognise_layer(header: list[str], source: str) -> tuple[str, HeaderMatch]:
    """The kind (``label_version``, ``expert_labels`` or ``boxes``) and header match of a layer file without a spec.

    Raises:
        UnknownHeaderError: naming the file, the columns found, the closest variant, the formats known (each with
            an example header) and that a generic layer needs ``<file>.layer.json``.
    """
    variants = tuple(v for group in FORMAT_VARIANTS.values() for v in group)
    try:
        match = recognise(header, source, variants)
    except UnknownHeaderError as exc:
        raise _unknown(header, source, exc) from None
    return _kind_of(match.variant), match
