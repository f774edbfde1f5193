"""Read: the consumers' entry point, :class:`pipeline.read.client.ReleaseClient` (``from pipeline import
ReleaseClient``), for published releases.

Owns, one module each: opening a release (``latest`` or a version) and handing out pyarrow, pandas, DuckDB and
WebDataset handles on the files its manifest lists (``client``); subsets picked on the metadata and accepted by every
reader (``selection``); one image by id through the manifest's row groups (``access``); the map-style PyTorch dataset
and its resumable sampler (``torchdata``, which imports torch: only ``torch_dataset()`` imports it); a checked,
resumable copy of a whole release on local disk (``download``). Read-only credentials are enough.

May use: the foundation (top-level ``pipeline`` modules), :mod:`pipeline.store`, the split names of
:mod:`pipeline.plan.split`, and the light parts of :mod:`pipeline.publish` (``manifest``, ``latest``, ``listing``,
``verify``), never its writers (``finish``, ``card``...); never :mod:`pipeline.run`, :mod:`pipeline.cli` or
:mod:`pipeline.dev`. Optional packages (torch, DuckDB, webdataset, datasets) only inside functions; never Airflow or
Great Expectations (a team that only reads installs ``.[read]``).
"""
