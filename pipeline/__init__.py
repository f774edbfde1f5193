"""NIH ChestX-ray14 release pipeline: raw archives in, versioned ML-ready releases out.

The readers' entry point is ``from pipeline import ReleaseClient`` (:class:`pipeline.read.client.ReleaseClient`). It
is imported on first use, so ``import pipeline`` stays cheap, and importing the client never imports Airflow,
Great Expectations or the pipeline's stages (a reader installs only ``.[read]``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
#: Names ``from pipeline import ...`` resolves lazily (from :mod:`pipeline.read.client`).
_READERS = ("ReleaseClient", "Release", "Selection")


def __getattr__(name: str) -> Any:
    """``pipeline.ReleaseClient``, ``pipeline.Release`` and ``pipeline.Selection``, imported when first asked for."""
    if name in _READERS:
        from pipeline.read import client

        return getattr(client, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
