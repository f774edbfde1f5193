"""Moving ``latest`` on the real local S3 endpoint: conditional writes, races between runs, a damaged pointer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pipeline import faults
from pipeline.errors import LatestPointerError
from pipeline.publish.latest import LATEST, move_latest, read_latest
from pipeline.publish.listing import resolve_version
from pipeline.publish.manifest import write_manifest
from pipeline.store.storage import ConditionFailedError, Store

pytestmark = pytest.mark.integration


def test_latest_never_moves_back_to_an_older_version(store: Store) -> None:
    assert move_latest(store, "2026.11.26", "m1", "f1")
    assert not move_latest(store, "2026.11.20", "m0", "f0")
    assert read_latest(store)["version"] == "2026.11.26"  # type: ignore[index]
    assert move_latest(store, "2026.11.26.2", "m2", "f2")


def test_conditional_replace_refuses_a_stale_etag(store: Store) -> None:
    store.put_bytes("p.json", b"1")
    found = store.get_tagged("p.json")
    assert found is not None
    body, etag = found
    assert body == b"1"
    store.put_bytes("p.json", b"2", if_match=etag)
    with pytest.raises(ConditionFailedError):
        store.put_bytes("p.json", b"3", if_match=etag)  # the object changed since that ETag was read
    assert store.get_bytes("p.json") == b"2"
    with pytest.raises(ConditionFailedError):
        store.put_bytes("gone.json", b"4", if_match=etag)
    assert not store.exists("gone.json")
    assert store.get_tagged("gone.json") is None


def _published(store: Store, version: str, at: str) -> None:
    write_manifest(store, version, {"input_fingerprint": f"fp-{version}", "published_at": at})


def _race_latest(store: Store, monkeypatch: pytest.MonkeyPatch, first: str, last: str, slow_s: float) -> None:
    """Move ``latest`` to two versions at once: both read ``latest.json`` and decide, then ``first`` writes and
    ``last`` writes ``slow_s`` seconds later (a slow link), as two runs finishing together would."""
    barrier = threading.Barrier(2, timeout=30)
    delay = {first: 0.0, last: slow_s}
    passed: set[str] = set()

    def latency(name: str) -> None:
        me = threading.current_thread().name
        if name != "publish.latest" or me in passed:
            return  # a retry after a conflict goes straight on
        passed.add(me)
        barrier.wait()  # both have read latest.json and decided to move it
        time.sleep(delay[me])

    monkeypatch.setattr(faults, "point", latency)
    with ThreadPoolExecutor(2) as pool:
        moves = [pool.submit(_named, v, move_latest, store, v, f"m-{v}", f"fp-{v}") for v in (first, last)]
        for move in moves:
            move.result()
    assert passed == {first, last}, "both runs decided before either wrote"


def _named(name: str, fn: Any, *args: Any) -> Any:
    threading.current_thread().name = name
    return fn(*args)


@pytest.mark.parametrize("newer_writes_first", [True, False])
def test_two_runs_moving_latest_at_once_leave_it_on_the_newer_release(
    store: Store, monkeypatch: pytest.MonkeyPatch, newer_writes_first: bool
) -> None:
    for round_ in range(3):
        old, new = f"2026.11.{10 + 2 * round_}", f"2026.11.{11 + 2 * round_}"
        _published(store, old, f"2026-11-{10 + 2 * round_}T03:00:00+00:00")
        _published(store, new, f"2026-11-{11 + 2 * round_}T03:00:00+00:00")
        first, last = (new, old) if newer_writes_first else (old, new)
        _race_latest(store, monkeypatch, first, last, slow_s=0.5)
        latest = read_latest(store)
        assert latest is not None
        assert latest["version"] == new, f"round {round_}: latest went back to {latest['version']}"
        assert latest["manifest_sha256"] == f"m-{new}"


@pytest.mark.parametrize("backfill_writes_last", [True, False])
def test_a_backfill_finishing_with_a_nightly_never_moves_latest_back(
    store: Store, monkeypatch: pytest.MonkeyPatch, backfill_writes_last: bool
) -> None:
    _published(store, "2026.11.01", "2026-11-01T03:00:00+00:00")
    assert move_latest(store, "2026.11.01", "m-2026.11.01", "fp")
    _published(store, "2026.11.27", "2026-11-27T03:00:00+00:00")
    _published(store, "2026.11.05", "2026-11-27T03:00:05+00:00")  # a backfill, published after the nightly
    order = ("2026.11.27", "2026.11.05") if backfill_writes_last else ("2026.11.05", "2026.11.27")
    _race_latest(store, monkeypatch, *order, slow_s=0.5)
    assert read_latest(store)["version"] == "2026.11.27"  # type: ignore[index]
    monkeypatch.undo()
    assert not move_latest(store, "2026.11.05", "m", "fp"), "a rerun of the backfill leaves latest alone"


def test_named_releases_become_latest_when_published_and_dates_then_take_over(store: Store) -> None:
    _published(store, "2026.11.26", "2026-11-26T03:00:00+00:00")
    _published(store, "rc1", "2026-11-26T15:00:00+00:00")
    _published(store, "2026.11.27", "2026-11-27T03:00:00+00:00")
    _published(store, "2026.11.20", "2026-11-27T04:00:00+00:00")
    moved = [move_latest(store, v, f"m-{v}", "fp") for v in ("2026.11.26", "rc1", "2026.11.27", "2026.11.20")]
    assert moved == [True, True, True, False]
    latest = read_latest(store)
    assert latest is not None
    assert latest["version"] == "2026.11.27"
    assert latest["published_at"] == "2026-11-27T03:00:00+00:00", "latest.json carries the manifest's time"


def test_a_damaged_latest_pointer_is_replaced_and_never_followed_outside_releases(store: Store) -> None:
    store.put_bytes(LATEST, b"{not json")
    _published(store, "v1", "2026-11-26T03:00:00+00:00")
    assert move_latest(store, "v1", "m-v1", "fp")
    assert resolve_version(store, "latest") == "v1"
    store.put_bytes(LATEST, b'{"version": "../../runs/x"}')
    with pytest.raises(LatestPointerError, match="not a release name: the pointer is damaged"):
        resolve_version(store, "latest")
