"""NIH ChestX-ray14 release pipeline: raw archives in, versioned ML-ready releases out."""

from __future__ import annotations

__version__ = "0.1.0"
