"""Publish: turn a run's converted units into a release that never changes, and keep ``latest`` on the right one.

Owns, one module each:

- :mod:`~pipeline.publish.finish`: the stage's entry point (the ``publish_release`` task calls ``finish``):
  side files, card, verification, accounting, the manifest, the pointer, in that order.
- :mod:`~pipeline.publish.manifest`: reading ``manifest.json`` and creating it with a conditional write.
- :mod:`~pipeline.publish.latest`: the order ``latest`` follows and moving ``latest.json`` with ``If-Match``.
- :mod:`~pipeline.publish.listing`: which versions are releases, ``latest`` resolved, a release's parent.
- :mod:`~pipeline.publish.verify`: re-reading files against the manifest (publishing and ``cxr verify``).
- :mod:`~pipeline.publish.accounting`: every input image and row is published or quarantined, bytes match.
- :mod:`~pipeline.publish.card`, :mod:`~pipeline.publish.card_plots`, :mod:`~pipeline.publish.croissant`:
  the dataset card, its plots and the Croissant description; :mod:`~pipeline.publish.diff`: what changed.

The choice and claim of a version belong to :mod:`pipeline.plan` (planning claims before anything is written).

May use: the foundation (top-level ``pipeline`` modules), :mod:`pipeline.store`, :mod:`pipeline.plan` and
:mod:`pipeline.convert`; never :mod:`pipeline.read`, :mod:`pipeline.run`, :mod:`pipeline.cli` or
:mod:`pipeline.dev`.
"""
