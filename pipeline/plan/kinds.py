"""Items lost and items absent, counted by kind and said in words.

Standard library only: run summaries (``pipeline.run.summary``, imported by the DAG's callbacks in the
dag-processor), the release card and the cross-check's log all name the kinds the same way, and none of them
needs pandas for it. What each reason code counts lives in :mod:`pipeline.plan.crosscheck`
(``QUARANTINE_KINDS``, ``SUBSET_KINDS``, ``accounting_summary``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Kind -> (singular, plural), in the order the summary names them.
KIND_WORDS: dict[str, tuple[str, str]] = {
    "images": ("image", "images"),
    "box_rows": ("box row", "box rows"),
    "split_list_rows": ("split-list row", "split-list rows"),
    "split_list_names": ("split-list name", "split-list names"),
    "layer_rows": ("annotation layer row", "annotation layer rows"),
    "boxes": ("box", "boxes"),
    "data_entry_rows": ("Data_Entry row", "Data_Entry rows"),
}


def kinds_text(counts: Mapping[str, int]) -> str:
    """``2 images, 1 box row`` (``KIND_WORDS`` order, zeros left out), or ``none``."""
    parts = [f"{n:,} {KIND_WORDS[k][n != 1]}" for k in KIND_WORDS if (n := int(counts.get(k, 0)))]
    return ", ".join(parts) or "none"


def accounting_lines(summary: Mapping[str, Any]) -> list[str]:
    """``quarantined: 2 images, 1 box row`` and ``not in this source (subset): 94,143 split-list names, ...``
    from ``accounting_summary``'s keys (as a run's summary and a manifest hold them)."""
    return [
        f"quarantined: {kinds_text(summary.get('quarantined_by_kind', {}))}",
        f"not in this source (subset): {kinds_text(summary.get('not_in_source', {}))}",
    ]


def accounting_text(summary: Mapping[str, Any]) -> str:
    """:func:`accounting_lines` on one line, ``; ``-joined."""
    return "; ".join(accounting_lines(summary))
