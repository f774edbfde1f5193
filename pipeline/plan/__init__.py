"""Plan: decide what a release holds and under which version, before anything of it is written.

Owns, one module each:

- :mod:`~pipeline.plan.crosscheck`: images in the raw zone against Data_Entry rows, boxes and split lists; every
  image and row ends up publishable, quarantined with its reason, or counted as not in this source.
- :mod:`~pipeline.plan.kinds`: those items counted by kind and said in words (standard library only, so run
  summaries and the DAG's callbacks can say them without pandas).
- :mod:`~pipeline.plan.split`: patient-level, deterministic train/val/test assignment (split modes).
- :mod:`~pipeline.plan.stats`: statistics per split and the checks run on a release's metadata.
- :mod:`~pipeline.plan.planning`: the plan itself (``draft``: join, split, units, fingerprint; ``build_plan``:
  claim the version and keep the plan in the run's workspace for convert and publish).
- :mod:`~pipeline.plan.versions`: version choice and claims, one algorithm for a real run and a dry run.
- :mod:`~pipeline.plan.preview`: the dry run (the same draft and version choice, nothing claimed or kept).

May use: the foundation (top-level ``pipeline`` modules), :mod:`pipeline.store`, :mod:`pipeline.ingest` and
:mod:`pipeline.curate`; never :mod:`pipeline.convert`, :mod:`pipeline.publish` or anything later. Convert and
publish may use plan.
"""
