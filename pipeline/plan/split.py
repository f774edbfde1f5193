"""Patient-level, deterministic train/val/test assignment.

A patient's split is a pure function of (mode, seed, patient id, official lists): no random
state, so it never changes between releases built with the same mode and seed, also when
patients are added. Modes:

- ``official``: test = patients of NIH's ``test_list.txt``; val carved from the rest by a stable
  hash of the patient id (``val_fraction``, default 10%).
- ``patient-hash``: train/val/test by a seeded hash of the patient id.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from pipeline.errors import UsageError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def patient_fraction(patient_id: int, seed: int, purpose: str) -> float:
    """Map a patient id to a stable number in [0, 1) (SHA-256, independent of Python's hash seed)."""
    digest = hashlib.sha256(f"cxr:{purpose}:{seed}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def resolve_mode(mode: str, has_lists: bool) -> str:
    """Turn ``auto`` into ``official`` when the split lists exist, ``patient-hash`` otherwise."""
    if mode == "auto":
        return "official" if has_lists else "patient-hash"
    if mode == "official" and not has_lists:
        raise UsageError(
            "split mode 'official' needs train_val_list.txt and test_list.txt in the source: add them, or use "
            "--split-mode patient-hash (or auto)"
        )
    return mode


def _hash_split(patient_id: int, seed: int, val_fraction: float, test_fraction: float) -> str:
    u = patient_fraction(patient_id, seed, "split")
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"


def assign_patients(
    patients: pd.Series,
    mode: str,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    test_patients: set[int] | None = None,
) -> dict[int, str]:
    """Return the split of every distinct patient id in ``patients``."""
    result: dict[int, str] = {}
    for pid in sorted({int(p) for p in patients}):
        if mode == "official":
            if test_patients is not None and pid in test_patients:
                result[pid] = "test"
            else:
                result[pid] = "val" if patient_fraction(pid, seed, "val") < val_fraction else "train"
        else:
            result[pid] = _hash_split(pid, seed, val_fraction, test_fraction)
    return result
