"""What a reviewer reads before deciding: the staged release's counts, validation, quarantine and changes.

:func:`brief` is the Markdown body of the Airflow review task's page and what ``cxr run --review`` prints. It
says everything from the staged manifest (never the store): version and parent, images and patients per split,
every validation failure (blocking, then warnings), quarantine reasons with counts, the changes since the parent
release (images added, removed, relabelled, moved; per annotation layer), and where the staged card is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.convert.pool import CONVERT_QUARANTINE_REASONS
from pipeline.plan.crosscheck import QUARANTINE_REASONS
from pipeline.plan.kinds import accounting_text
from pipeline.review.staging import Staged

SPLIT_ORDER = ("train", "val", "test")
#: Validation failures listed one by one at most (the rest are counted).
LISTED_FAILURES = 20


def _splits(manifest: Mapping[str, Any]) -> list[str]:
    counts, patients = manifest.get("counts", {}), manifest.get("patients", {})
    rows = [f"| {s} | {int(counts.get(s, 0)):,} | {int(patients.get(s, 0)):,} |" for s in SPLIT_ORDER]
    total = f"| **all** | {sum(int(n) for n in counts.values()):,} | {sum(int(n) for n in patients.values()):,} |"
    return ["| split | images | patients |", "|---|---|---|", *rows, total]


def _validation(summary: Mapping[str, Any]) -> list[str]:
    if not summary:
        return ["- no validation results were kept for this run"]
    blocking, warnings = int(summary.get("blocking_failures", 0)), int(summary.get("warnings", 0))
    lines = [
        f"- {int(summary.get('expectations', 0))} expectations: {blocking} blocking failure(s), {warnings} warning(s)"
    ]
    failed = sorted(summary.get("failed", []), key=lambda f: f.get("severity") != "blocking")
    for item in failed[:LISTED_FAILURES]:
        where = f" on `{item['column']}`" if item.get("column") else ""
        count = f" ({item['unexpected_count']} unexpected)" if item.get("unexpected_count") is not None else ""
        check = f"{item.get('suite', '?')} / {item.get('check', '?')}"
        lines.append(f"  - {item.get('severity', '?')}: {check}{where}{count}")
    if len(failed) > LISTED_FAILURES:
        lines.append(f"  - and {len(failed) - LISTED_FAILURES} more (the staged card's validation section lists all)")
    return lines


def _quarantine(manifest: Mapping[str, Any]) -> list[str]:
    reasons = {code: int(n) for code, n in manifest.get("quarantine_reasons", {}).items() if int(n)}
    lines = [f"- {int(manifest.get('quarantined', 0)):,} item(s) quarantined: {accounting_text(manifest)}"]
    wording = {**QUARANTINE_REASONS, **CONVERT_QUARANTINE_REASONS}
    lines += [f"  - {n:,}: {wording.get(code, code)}" for code, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return lines


def _changes(manifest: Mapping[str, Any]) -> list[str]:
    parent = manifest.get("parent")
    if not parent:
        return ["- no earlier release: this is the first one in this store"]
    changes = manifest.get("diff_from_parent") or {}
    words = ", ".join(f"{int(changes.get(k, 0)):,} {k}" for k in ("added", "removed", "relabelled", "moved"))
    lines = [f"- since release {parent}: {words}; {int(changes.get('unchanged', 0)):,} unchanged"]
    for layer, counts in (manifest.get("layer_diff_from_parent") or {}).items():
        lines.append(f"  - layer {layer}: " + ", ".join(f"{int(n):,} {k}" for k, n in counts.items()))
    return lines


def brief(staged: Staged, *, timeout_text: str | None = None) -> str:
    """The reviewer's page: what approving would publish, and what approve, reject and no answer do."""
    manifest = staged.manifest
    card = staged.summary.get("card", "README.md in the staged release folder")
    lines = [
        f"**Release {staged.version}** is staged by run `{staged.run_id}` and waits for review. Nothing is visible to "
        "consumers until it is approved.",
        "",
        *_splits(manifest),
        "",
        "**Validation**",
        *_validation(manifest.get("validation") or {}),
        "",
        "**Quarantine**",
        *_quarantine(manifest),
        "",
        "**Changes**",
        *_changes(manifest),
        "",
        f"**Staged card**: `{card}`",
        "",
        f"*Approve* publishes release {staged.version} and moves `latest` to it. *Reject* (say why in the reason) "
        "removes the staged files and frees the version; the reason is kept with the run.",
    ]
    if timeout_text:
        lines.append(f"No answer within {timeout_text} counts as a rejection.")
    return "\n".join(lines)
