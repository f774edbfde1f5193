"""Layers: annotation layers beside the primary labels: NIH's other label version, Google's expert labels, extra
boxes and any relabel a team makes, each validated, joined to the release by image and compared with the labels.

Owns, one module each:

- :mod:`~pipeline.layers.schema`: what a layer is (:class:`~pipeline.layers.schema.Layer`: id, kind, files, fields),
  the ``--annotations ID=LOCATION`` syntax, the struct column each layer becomes and its values per image;
- :mod:`~pipeline.layers.formats`: recognising a layer file's format by its header;
- :mod:`~pipeline.layers.spec`: the JSON spec of a generic layer (``<file>.layer.json``);
- :mod:`~pipeline.layers.load`: loading a layer's files into its normalised table;
- :mod:`~pipeline.layers.checks`: its expectation suite (``expectations/layer_*.json``) and row quarantine;
- :mod:`~pipeline.layers.compare`: a layer against the primary labels (coverage, 2x2 tables, Cohen's kappa,
  relabels) for the card;
- :mod:`~pipeline.layers.changes`: what changed in a layer between two releases.

May use: the foundation (top-level ``pipeline`` modules), :mod:`pipeline.store`, :mod:`pipeline.ingest` and
:mod:`pipeline.curate` (reading CSV cells, the header variants, the suites). Plan, convert and publish may use
layers; nothing here imports them.
"""
