"""The figures the reliability tests produce, collected in ``test-artifacts/reliability.json`` for RELIABILITY.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIGURES = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability.json"


def record(section: str, key: str, value: Any) -> None:
    """Store one figure under ``section`` / ``key`` (tests run one at a time: read, update, write)."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, dict[str, Any]] = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data.setdefault(section, {})[key] = value
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
