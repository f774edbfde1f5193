"""Convert: turn each planned unit into its WebDataset tar shard and Parquet file(s) under the release.

Owns, one module each:

- :mod:`~pipeline.convert.units`: converting one unit (the ``convert_unit`` task), its Parquet writer and its
  result in the run's workspace.
- :mod:`~pipeline.convert.pool`: fetching a unit's images and processing them through a bounded pipeline,
  decoding in forked worker processes; images that cannot be decoded become quarantine rows.
- :mod:`~pipeline.convert.pixels`: proving an image decodes, converting it to 8-bit grayscale, the variant.
- :mod:`~pipeline.convert.schema`: the release's row schema (Parquet, and each sample's ``.json``).
- :mod:`~pipeline.convert.tarstream`: the byte-reproducible USTAR writer of WebDataset shards.

PNG structure (headers, CRCs, decodability) is the foundation's :mod:`pipeline.png`, shared with ingest.

May use: the foundation (top-level ``pipeline`` modules), :mod:`pipeline.store` and :mod:`pipeline.plan`; never
:mod:`pipeline.publish` or anything later. Publish may use convert (the schema and the quarantine reasons).
"""
