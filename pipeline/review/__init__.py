"""Review before publish (write-audit-publish): a run stages its release, a person approves or rejects it.

Owns: ``staging`` (the staged release, ``runs/<run>/staged.json``: every file written and checked, the manifest
to be; rejecting it removes the staged files and releases the claim), ``decision`` (a reviewer's decision, from
Airflow's human-in-the-loop task, the terminal or ``--approve``; recorded in ``raw/runs/<run>/review.json`` and in
the manifest's ``provenance``) and ``brief`` (what the reviewer reads: counts, validation, quarantine, changes).

A staged release is no release: only its manifest makes a version one (:mod:`pipeline.publish.manifest`), and
the manifest is written only on approval. Standard library only at import time, except ``staging`` (the store):
the DAG file imports ``decision`` when it is parsed.

May use: the foundation, ``store`` (staging keeps its record there), ``plan`` and ``convert`` (the words of the
quarantine reasons in the brief); ``publish`` uses it (the staged release is what publishing publishes), never the
other way round.
"""
