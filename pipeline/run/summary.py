"""What a run says when it ends: one sentence for the DAG's callbacks, a few lines for ``cxr run``.

Standard library only (and :mod:`pipeline.plan.kinds` and :mod:`pipeline.review.decision`, which are too): the
DAG's callbacks and the consumer DAG run in the dag-processor and import this module alone, never
:mod:`pipeline.run.tasks` (which pulls in pandas, pyarrow and boto3). The summaries read the small dicts the tasks
return (``publish_release``'s summary, a dry run's plan, the failed task's error), never the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.plan.kinds import accounting_lines, accounting_text
from pipeline.review.decision import review_text


def counts_text(counts: Mapping[str, int]) -> str:
    """``train 8, val 1, test 2``, or ``no images``."""
    return ", ".join(f"{split} {count}" for split, count in counts.items()) or "no images"


def outcome_text(outcome: Mapping[str, Any]) -> str:
    """One sentence on what a finished run published, from ``publish_release``'s (or a dry run's plan) summary."""
    lost = f"{outcome.get('quarantined', 0)} quarantined"
    if "quarantined_by_kind" in outcome:  # what was lost, apart from what this source does not hold
        lost = accounting_text(outcome)
    counts = f"({counts_text(outcome.get('counts', {}))}; {lost})"
    version = outcome.get("version", "?")
    if outcome.get("dry_run"):
        verb = "would keep the unchanged" if outcome.get("unchanged") else "would publish"
        return f"dry run: {verb} release {version} {counts}; nothing was claimed or published."
    if outcome.get("published"):
        reviewed = f" ({review_text(outcome['review'])})" if outcome.get("review") else ""
        return f"published release {version} {counts} at {outcome.get('manifest', '?')}{reviewed}."
    if outcome.get("review"):
        return f"release {version} {counts} was {review_text(outcome['review'])}; nothing was published."
    return f"inputs unchanged: release {version} already holds them {counts}; nothing new was published."


def failure_text(failure: Mapping[str, Any]) -> str:
    """One sentence on where and why a run failed, with what to do next."""
    where = str(failure.get("task") or "an unknown task")
    if failure.get("map_index", -1) not in (-1, None):
        where += f"[{failure['map_index']}]"
    reason = str(failure.get("reason") or "see the task's log")
    attempt = f" on try {failure['try_number']}" if failure.get("try_number") else ""
    return f"failed at task {where}{attempt}: {reason}."


def run_summary(dag_id: str, run_id: str, outcome: Mapping[str, Any] | None, failure: Mapping[str, Any] | None) -> str:
    """The one-paragraph summary the DAG's callbacks log at the end of every run."""
    head = f"{dag_id} run {run_id}"
    if failure is not None:
        return f"{head} {failure_text(failure)} Its log says more; a fixed input or parameter needs a new run."
    if outcome is None:
        return f"{head} succeeded, but left no summary (was publish skipped?)."
    return f"{head} succeeded: {outcome_text(outcome)}"


def release_event_text(uri: str, extra: Mapping[str, Any]) -> str:
    """What the example consumer DAG logs for each release it was triggered by."""
    counts = counts_text(extra.get("counts", {}))
    return (
        f"release {extra.get('version', '?')} is ready at {uri}: {counts} images, "
        f"{extra.get('quarantined', 0)} quarantined"
    )


def run_lines(summary: Mapping[str, Any]) -> list[str]:
    """What ``cxr run`` prints when it ends: the release and its state, images per split, what was lost or absent."""
    if summary.get("dry_run"):
        state = "unchanged (a dry run: nothing claimed)" if summary.get("unchanged") else "would be published (dry run)"
    elif summary.get("review") and not summary.get("published"):
        state = f"not published: {review_text(summary['review'])}"
    else:
        state = "published" if summary.get("published") else "unchanged (nothing new published)"
    lines = [f"release {summary.get('version', '?')}: {state}"]
    if summary.get("review") and summary.get("published"):
        lines.append(f"  review: {review_text(summary['review'])}")
    lines += [f"  {split:<5} {count:>7} images" for split, count in summary.get("counts", {}).items()]
    return lines + [f"  {line}" for line in accounting_lines(summary)]
