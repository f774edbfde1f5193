"""Patient-level splits: deterministic, stable when patients are added, never leaking."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.plan import split


def _assign(patients: list[int], mode: str = "patient-hash", **kw: object) -> dict[int, str]:
    args = {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.2, **kw}
    return split.assign_patients(pd.Series(patients), mode, **args)  # type: ignore[arg-type]


def test_same_inputs_same_splits_and_ratios_close_to_the_targets() -> None:
    patients = list(range(1, 20_001))
    first, second = _assign(patients), _assign(list(reversed(patients)))
    assert first == second
    shares = pd.Series(first).value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.02)
    assert shares["val"] == pytest.approx(0.1, abs=0.02)


def test_adding_patients_never_moves_existing_ones() -> None:
    before = _assign(list(range(1, 3001)))
    after = _assign(list(range(1, 6001)))
    assert all(after[p] == s for p, s in before.items())


def test_seed_changes_the_assignment() -> None:
    assert _assign(list(range(1, 500)), seed=1) != _assign(list(range(1, 500)), seed=2)


def test_official_mode_puts_test_list_patients_in_test_and_carves_val_from_the_rest() -> None:
    got = _assign(list(range(1, 2001)), "official", test_patients={5, 6, 7})
    assert {p for p, s in got.items() if s == "test"} == {5, 6, 7}
    assert 0.05 < sum(s == "val" for s in got.values()) / 2000 < 0.15


def test_auto_mode_prefers_official_lists() -> None:
    assert split.resolve_mode("auto", has_lists=True) == "official"
    assert split.resolve_mode("auto", has_lists=False) == "patient-hash"
    with pytest.raises(ValueError, match=r"needs train_val_list\.txt"):
        split.resolve_mode("official", has_lists=False)
