"""The dry run and the real run choose the same version for the same store state (one algorithm, asked with and
without claiming), on the real local S3 endpoint; the dry run writes nothing, the real run leaves its claim."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline.config import RunConfig, StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import ReleaseConflictError
from pipeline.plan.versions import choose_version
from pipeline.store import layout
from pipeline.store.storage import Store
from pipeline.store.tables import get_json, put_json

DAY = "2026.11.26"


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    cfg = StoreConfig(f"s3://{s3_bucket}/p", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    return Store(cfg)


def _cfg(store: Store, **kw: Any) -> RunConfig:
    return RunConfig(source="/nowhere", store=store.config, logical_date="2026-11-26T02:00:00+00:00", run_id="r", **kw)


def _published(store: Store, version: str, fingerprint: str) -> None:
    put_json(store, layout.manifest_key(version), {"input_fingerprint": fingerprint})


def _claimed(store: Store, version: str, fingerprint: str) -> None:
    put_json(store, layout.claim_key(version), {"fingerprint": fingerprint, "run_id": "other"})


def _latest(store: Store, version: str, fingerprint: str) -> None:
    _published(store, version, fingerprint)
    put_json(store, layout.LATEST, {"version": version, "input_fingerprint": fingerprint})


def _snapshot(store: Store) -> dict[str, bytes]:
    return {info.key: store.get_bytes(info.key) for info in store.list("")}


Setup = Callable[[Store], None]
#: name -> (store state, run settings, the (version, unchanged) both must choose for fingerprint "mine")
STATES: dict[str, tuple[Setup, dict[str, Any], tuple[str, bool]]] = {
    "empty store": (lambda s: None, {}, (DAY, False)),
    "latest holds these inputs": (lambda s: _latest(s, "v3", "mine"), {}, ("v3", True)),
    "force ignores latest": (lambda s: _latest(s, "v3", "mine"), {"force": True}, (DAY, False)),
    "day published, other inputs": (lambda s: _published(s, DAY, "theirs"), {}, (f"{DAY}.2", False)),
    "day published, these inputs": (lambda s: _published(s, DAY, "mine"), {}, (DAY, True)),
    "day claimed for other inputs": (lambda s: _claimed(s, DAY, "theirs"), {}, (f"{DAY}.2", False)),
    "day claimed for these inputs": (lambda s: _claimed(s, DAY, "mine"), {}, (DAY, False)),
    "day and .2 taken": (
        lambda s: (_published(s, DAY, "a"), _claimed(s, f"{DAY}.2", "b")),
        {},
        (f"{DAY}.3", False),
    ),
    "explicit, free": (lambda s: None, {"release": "v9"}, ("v9", False)),
    "explicit, published with these inputs": (lambda s: _published(s, "v9", "mine"), {"release": "v9"}, ("v9", True)),
    "explicit, claimed for other inputs, forced": (
        lambda s: _claimed(s, "v9", "theirs"),
        {"release": "v9", "force": True},
        ("v9", False),
    ),
}
#: name -> (store state, run settings) in which both refuse with the same message
REFUSED: dict[str, tuple[Setup, dict[str, Any]]] = {
    "explicit, published with other inputs": (lambda s: _published(s, "v9", "theirs"), {"release": "v9"}),
    "explicit, published with other inputs, forced": (
        lambda s: _published(s, "v9", "theirs"),
        {"release": "v9", "force": True},
    ),
    "explicit, claimed for other inputs": (lambda s: _claimed(s, "v9", "theirs"), {"release": "v9"}),
}


@pytest.mark.parametrize("case", list(STATES))
def test_the_dry_run_answers_the_version_the_real_run_claims(store: Store, case: str) -> None:
    setup, settings, expected = STATES[case]
    setup(store)
    before = _snapshot(store)
    assert choose_version(store, _cfg(store, **settings), "mine", claim=False) == expected
    assert _snapshot(store) == before  # nothing claimed, nothing written
    assert choose_version(store, _cfg(store, **settings), "mine", claim=True) == expected
    version, unchanged = expected
    if not unchanged:
        assert get_json(store, layout.claim_key(version))["fingerprint"] == "mine"


@pytest.mark.parametrize("case", list(REFUSED))
def test_both_refuse_a_version_taken_by_other_content_with_the_same_words(store: Store, case: str) -> None:
    setup, settings = REFUSED[case]
    setup(store)
    before = _snapshot(store)
    refusals = []
    for claim in (False, True):
        with pytest.raises(ReleaseConflictError) as caught:
            choose_version(store, _cfg(store, **settings), "mine", claim=claim)
        refusals.append(str(caught.value))
    assert refusals[0] == refusals[1]
    assert "release v9 already exists (or is being published) with different content" in refusals[0]
    assert "choose another version" in refusals[0]
    assert _snapshot(store) == before  # a refused run leaves the other run's version as it was


def test_a_forced_take_over_removes_the_other_runs_files_and_claims_for_this_run(store: Store) -> None:
    _claimed(store, "v9", "theirs")
    store.put_bytes(layout.release_key("v9", "parquet/half-written.parquet"), b"partial")
    assert choose_version(store, _cfg(store, release="v9", force=True), "mine", claim=True) == ("v9", False)
    assert get_json(store, layout.claim_key("v9")) | {"claimed_at": None} == {
        "fingerprint": "mine",
        "run_id": "r",
        "claimed_at": None,
    }
    assert not store.exists(layout.release_key("v9", "parquet/half-written.parquet"))
