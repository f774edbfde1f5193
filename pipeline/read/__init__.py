"""Read: the consumers' entry point, :class:`pipeline.read.client.ReleaseClient`, for published releases.

Owns opening a release (``latest`` or a version) and handing out pyarrow, pandas, DuckDB and WebDataset
handles on the files its manifest lists; read-only credentials are enough.

May use: the foundation (top-level ``pipeline`` modules), :mod:`pipeline.store`, the split names of
:mod:`pipeline.plan.split`, and the light parts of :mod:`pipeline.publish` (``manifest``, ``latest``, ``listing``,
``verify``), never its writers (``finish``, ``card``...); never :mod:`pipeline.run`, :mod:`pipeline.cli` or
:mod:`pipeline.dev`.
"""
