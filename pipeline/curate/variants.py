"""The header variants of the NIH metadata files, and recognising which one a file's header is.

Every copy of the metadata that circulates is recognised by its header and reported as a variant:

* ``data_entry/bracketed-trailing-comma``: ``...,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],``
  (the original 2017 file: the brackets hold commas and a trailing comma adds an empty column);
* ``data_entry/bracketed``: the same without the trailing comma (the v2020 file);
* ``data_entry/explicit``: ``...,OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,...``
  (also Kaggle's ``sample_labels.csv``);
* ``data_entry/no-size``: the seven core columns only (size and spacing are null then);
* ``data_entry/underscore``: ``Image_Index,Finding_Labels,Follow_Up_#,...``, size/spacing columns optional;
* ``bbox/nih``: ``Image Index,Finding Label,Bbox [x,y,w,h],,,``; ``bbox/explicit``: ``...,x,y,w,h``.

Column order is free and names match in any case. A header that matches no variant exactly is tried again
with names compared without spaces, ``_``, ``-`` and ``#`` (``Follow_up``, ``FINDING LABELS``; note
``header_spelled_differently``). Columns pandas calls ``Unnamed: N`` count as empty; a leading unnamed
column is a row number written by a spreadsheet or ``DataFrame.to_csv`` and is dropped. A header that matches
none is an :class:`~pipeline.errors.UnknownHeaderError` naming the closest variant and what it lacks.

To add a variant: declare it in ``DATA_ENTRY_VARIANTS`` or ``BBOX_VARIANTS`` (its column names, the column
roles they map to, an example header) and add its header to the variant tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.curate.normalise import SIZE_KEYS
from pipeline.curate.reading import brief
from pipeline.errors import UnknownHeaderError

__all__ = [
    "BBOX_VARIANTS",
    "DATA_ENTRY_VARIANTS",
    "HeaderMatch",
    "Variant",
    "loose_name",
    "recognise",
    "split_header",
]

#: The column role of a leading index column (a row number a spreadsheet or pandas wrote); dropped on loading.
ROW_NUMBER = "_row_number"


@dataclass(frozen=True)
class Variant:
    """One known header: column name -> the column role(s) its cells hold, the roles it must have, an example."""

    name: str
    tokens: Mapping[str, tuple[str, ...]]
    required: frozenset[str]
    example: str
    trailing: bool | None = None  # True: needs trailing empty columns, False: must not have them


def _tokens(names: Mapping[str, str | tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {k: (v,) if isinstance(v, str) else v for k, v in names.items()}


_LOOSE_DROP = re.compile(r"[\s_#-]+")
#: pandas names a column without a header ``Unnamed: 11``: the same as an empty name.
_PANDAS_UNNAMED = re.compile(r"unnamed:\s*\d+", re.IGNORECASE)
_CORE_KEYS = frozenset({"image_index", "labels", "follow_up", "patient_id", "age", "sex", "view"})
_SPACED = {
    "Image Index": "image_index", "Finding Labels": "labels", "Follow-up #": "follow_up",
    "Patient ID": "patient_id", "Patient Age": "age", "Patient Gender": "sex", "Patient Sex": "sex",
    "View Position": "view",
}  # fmt: skip
_UNDERSCORE = {k.replace(" ", "_").replace("-up", "_Up"): v for k, v in _SPACED.items()}
_BRACKETED: dict[str, tuple[str, ...]] = {
    "OriginalImage[Width,Height]": ("width", "height"),
    "OriginalImagePixelSpacing[x,y]": ("spacing_x", "spacing_y"),
}
_EXPLICIT = {
    "OriginalImageWidth": "width", "OriginalImageHeight": "height",
    "OriginalImagePixelSpacing_x": "spacing_x", "OriginalImagePixelSpacing_y": "spacing_y",
}  # fmt: skip
_CORE_EXAMPLE = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"
_ALL_KEYS = _CORE_KEYS | set(SIZE_KEYS)

DATA_ENTRY_VARIANTS: tuple[Variant, ...] = (
    Variant("data_entry/bracketed-trailing-comma", _tokens({**_SPACED, **_BRACKETED}), _ALL_KEYS,
            _CORE_EXAMPLE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],", trailing=True),
    Variant("data_entry/bracketed", _tokens({**_SPACED, **_BRACKETED}), _ALL_KEYS,
            _CORE_EXAMPLE + ",OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]", trailing=False),
    Variant("data_entry/explicit", _tokens({**_SPACED, **_EXPLICIT}), _ALL_KEYS,
            _CORE_EXAMPLE + "," + ",".join(_EXPLICIT)),
    Variant("data_entry/no-size", _tokens(_SPACED), _CORE_KEYS, _CORE_EXAMPLE),
    Variant("data_entry/underscore", _tokens({**_UNDERSCORE, **_EXPLICIT, **_BRACKETED}), _CORE_KEYS,
            _CORE_EXAMPLE.replace(" ", "_").replace("-up", "_Up") + "[,size and spacing columns]"),
)  # fmt: skip
_BOX_KEYS = frozenset({"image_index", "label", "x", "y", "w", "h"})
BBOX_VARIANTS: tuple[Variant, ...] = (
    Variant("bbox/nih", _tokens({"Image Index": "image_index", "Finding Label": "label",
                                 "Finding Labels": "label", "Bbox [x,y,w,h]": ("x", "y", "w", "h")}),
            _BOX_KEYS, "Image Index,Finding Label,Bbox [x,y,w,h],,,"),
    Variant("bbox/explicit", _tokens({"Image Index": "image_index", "Finding Label": "label",
                                      "Finding Labels": "label", "x": "x", "y": "y", "w": "w", "h": "h"}),
            _BOX_KEYS, "Image Index,Finding Label,x,y,w,h"),
)  # fmt: skip


@dataclass(frozen=True)
class HeaderMatch:
    """The variant a header was recognised as, the column role of each cell, and the header's quirk counts."""

    variant: Variant
    keys: list[str]  # one per cell; ``ROW_NUMBER`` for a leading index column
    notes: dict[str, int]


def split_header(cells: list[str]) -> list[str]:
    """Rejoin header cells that a naive comma split broke inside brackets (``OriginalImage[Width,Height]``).

    Surrounding whitespace is stripped from each column name.
    """
    tokens: list[str] = []
    depth = 0
    for cell in cells:
        if depth > 0:
            tokens[-1] += "," + cell
        else:
            tokens.append(cell)
        depth += cell.count("[") - cell.count("]")
    return [token.strip() for token in tokens]


def loose_name(token: str) -> str:
    """A column name without case, spaces, ``_``, ``-`` or ``#``: ``Follow_Up_#`` -> ``followup``."""
    return _LOOSE_DROP.sub("", token.lower())


def _match(tokens: list[str], trailing: int, variant: Variant, loose: bool) -> list[str] | None:
    if variant.trailing is not None and variant.trailing != (trailing > 0):
        return None
    names = {loose_name(k) if loose else k.lower(): v for k, v in variant.tokens.items()}
    keys: list[str] = []
    for token in tokens:
        mapped = names.get(loose_name(token) if loose else token.lower())
        if mapped is None:
            return None
        keys.extend(mapped)
    if len(set(keys)) != len(keys) or not variant.required <= set(keys):
        return None
    return keys


def _header_tokens(header: list[str]) -> tuple[list[str], int, int]:
    """Column names, the number of trailing empty columns and of leading (index) columns."""
    tokens = ["" if _PANDAS_UNNAMED.fullmatch(t) else t for t in split_header(header)]
    trailing = 0
    while tokens and not tokens[-1]:
        tokens.pop()
        trailing += 1
    leading = 1 if len(tokens) > 1 and not tokens[0] else 0
    return tokens[leading:], trailing, leading


def recognise(header: list[str], source: str, variants: tuple[Variant, ...]) -> HeaderMatch:
    """Find the variant of a header: exact names (any case) first, then names spelled differently.

    Raises:
        UnknownHeaderError: naming the file, the columns found, the closest variant and every known variant.
    """
    tokens, trailing, leading = _header_tokens(header)
    notes = {"trailing_empty_columns": trailing, "leading_index_column": leading}
    for loose in (False, True):
        for variant in variants:
            keys = _match(tokens, trailing, variant, loose)
            if keys is not None:
                notes["header_spelled_differently"] = int(loose)
                return HeaderMatch(variant, [ROW_NUMBER] * leading + keys, {k: v for k, v in notes.items() if v})
    known = "\n".join(f"  {v.name}: {v.example}" for v in variants)
    raise UnknownHeaderError(f"{source}: unknown header; columns found: {brief(tokens)} (plus {trailing} empty); "
                             f"{_closest(tokens, trailing, variants)}; known variants:\n{known}")  # fmt: skip


def _closest(tokens: list[str], trailing: int, variants: tuple[Variant, ...]) -> str:
    loose = [loose_name(token) for token in tokens]
    distinct = set(loose)
    table = {variant.name: {loose_name(k): v for k, v in variant.tokens.items()} for variant in variants}

    def names(variant: Variant) -> dict[str, tuple[str, ...]]:
        return table[variant.name]

    def unknown(variant: Variant) -> list[str]:
        known = names(variant)
        return [token for token, name in zip(tokens, loose, strict=True) if name not in known]

    def lacking(variant: Variant) -> set[str]:
        found = {key for name, keys in names(variant).items() if name in distinct for key in keys}
        return set(variant.required) - found

    def distance(variant: Variant) -> tuple[int, bool]:
        mismatch = len(unknown(variant)) + len(lacking(variant))
        return mismatch, variant.trailing is not None and variant.trailing != (trailing > 0)

    best = min(variants, key=distance)
    lacking_keys = lacking(best)
    missing = dict.fromkeys(" or ".join(repr(name) for name, k in best.tokens.items() if k == keys)
                            for keys in best.tokens.values() if lacking_keys & set(keys))  # fmt: skip
    text = f"closest variant {best.name}: unexpected columns {brief(unknown(best))}, "
    text += f"missing columns [{', '.join(missing)}]"
    if any(";" in token or "\t" in token for token in tokens):
        text += "; the header looks separated by ';' or tabs: save the file comma-separated"
    return text
