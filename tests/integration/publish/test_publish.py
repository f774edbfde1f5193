"""Publishing against the real local S3 endpoint.

Conditional writes, claims and the latest pointer; then a real release republished, overwritten, raced,
broken before publishing and tampered with after.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pipeline import faults
from pipeline.config import RunConfig, StoreConfig
from pipeline.dev.stack import StackInfo
from pipeline.errors import PipelineError, ReleaseConflictError
from pipeline.publish import versions as publish
from pipeline.run import tasks
from pipeline.store.storage import ConditionFailedError, ObjectExistsError, Store
from tests.integration import releases

pytestmark = pytest.mark.integration


@pytest.fixture
def store(s3_stack: StackInfo, s3_bucket: str) -> Store:
    cfg = StoreConfig(f"s3://{s3_bucket}/p", s3_stack.endpoint_url, s3_stack.access_key_id, s3_stack.secret_access_key)
    return Store(cfg)


def _cfg(store: Store, **kw: Any) -> RunConfig:
    return RunConfig(source="/nowhere", store=store.config, logical_date="2026-11-26T02:00:00+00:00", **kw)


def test_conditional_create_refuses_an_existing_key(store: Store) -> None:
    store.put_bytes("a.json", b"1", if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put_bytes("a.json", b"2", if_absent=True)
    assert store.get_bytes("a.json") == b"1"


def test_version_from_logical_date_and_suffix_for_other_content(store: Store) -> None:
    assert publish.claim_version(store, _cfg(store), "fp-a") == ("2026.11.26", False)
    publish.write_manifest(store, "2026.11.26", {"input_fingerprint": "fp-a"})
    assert publish.claim_version(store, _cfg(store), "fp-a") == ("2026.11.26", True)
    assert publish.claim_version(store, _cfg(store), "fp-b") == ("2026.11.26.2", False)


def test_explicit_version_with_other_content_is_refused(store: Store) -> None:
    publish.write_manifest(store, "v7", {"input_fingerprint": "one"})
    with pytest.raises(ReleaseConflictError, match="release v7 already exists"):
        publish.claim_version(store, _cfg(store, release="v7"), "two")


def test_concurrent_claims_of_one_version_have_one_winner(store: Store) -> None:
    outcomes: list[str] = []

    def claim(fp: str) -> None:
        try:
            publish.claim_version(store, _cfg(store, release="race"), fp)
            outcomes.append(fp)
        except ReleaseConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=claim, args=(f"fp{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("refused") == 5


def test_latest_never_moves_back_to_an_older_version(store: Store) -> None:
    assert publish.move_latest(store, "2026.11.26", "m1", "f1")
    assert not publish.move_latest(store, "2026.11.20", "m0", "f0")
    assert publish.read_latest(store)["version"] == "2026.11.26"  # type: ignore[index]
    assert publish.move_latest(store, "2026.11.26.2", "m2", "f2")


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
    publish.write_manifest(store, version, {"input_fingerprint": f"fp-{version}", "published_at": at})


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
        moves = [pool.submit(_named, v, publish.move_latest, store, v, f"m-{v}", f"fp-{v}") for v in (first, last)]
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
        latest = publish.read_latest(store)
        assert latest is not None
        assert latest["version"] == new, f"round {round_}: latest went back to {latest['version']}"
        assert latest["manifest_sha256"] == f"m-{new}"


@pytest.mark.parametrize("backfill_writes_last", [True, False])
def test_a_backfill_finishing_with_a_nightly_never_moves_latest_back(
    store: Store, monkeypatch: pytest.MonkeyPatch, backfill_writes_last: bool
) -> None:
    _published(store, "2026.11.01", "2026-11-01T03:00:00+00:00")
    assert publish.move_latest(store, "2026.11.01", "m-2026.11.01", "fp")
    _published(store, "2026.11.27", "2026-11-27T03:00:00+00:00")
    _published(store, "2026.11.05", "2026-11-27T03:00:05+00:00")  # a backfill, published after the nightly
    order = ("2026.11.27", "2026.11.05") if backfill_writes_last else ("2026.11.05", "2026.11.27")
    _race_latest(store, monkeypatch, *order, slow_s=0.5)
    assert publish.read_latest(store)["version"] == "2026.11.27"  # type: ignore[index]
    monkeypatch.undo()
    assert not publish.move_latest(store, "2026.11.05", "m", "fp"), "a rerun of the backfill leaves latest alone"


def test_named_releases_become_latest_when_published_and_dates_then_take_over(store: Store) -> None:
    _published(store, "2026.11.26", "2026-11-26T03:00:00+00:00")
    _published(store, "rc1", "2026-11-26T15:00:00+00:00")
    _published(store, "2026.11.27", "2026-11-27T03:00:00+00:00")
    _published(store, "2026.11.20", "2026-11-27T04:00:00+00:00")
    moved = [publish.move_latest(store, v, f"m-{v}", "fp") for v in ("2026.11.26", "rc1", "2026.11.27", "2026.11.20")]
    assert moved == [True, True, True, False]
    latest = publish.read_latest(store)
    assert latest is not None
    assert latest["version"] == "2026.11.27"
    assert latest["published_at"] == "2026-11-27T03:00:00+00:00", "latest.json carries the manifest's time"


def test_a_damaged_latest_pointer_is_replaced_and_never_followed_outside_releases(store: Store) -> None:
    store.put_bytes(publish.LATEST, b"{not json")
    _published(store, "v1", "2026-11-26T03:00:00+00:00")
    assert publish.move_latest(store, "v1", "m-v1", "fp")
    assert publish.resolve_version(store, "latest") == "v1"
    store.put_bytes(publish.LATEST, b'{"version": "../../runs/x"}')
    with pytest.raises(PipelineError, match="not a release name: the pointer is damaged"):
        publish.resolve_version(store, "latest")


# =====================================================================================================
# A real release, published through every stage, then republished, raced, tampered with and verified
# =====================================================================================================


@pytest.fixture(scope="module")
def released(s3_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = releases.make_source(tmp_path_factory.mktemp("publish") / "source", images=60, seed=5)
    store = releases.new_store(s3_stack, "publish-real")
    summary = releases.publish(store, source, "first", release="v1")
    return {"store": store, "source": source, "summary": summary, "uri": "s3://publish-real/cxr"}


def _consumer_env(stack: StackInfo) -> dict[str, str]:
    return stack.consumer_env()


def test_publish_writes_a_complete_release_with_manifest_last(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    assert released["summary"]["published"] is True
    manifest = publish.read_manifest(store, "v1")
    assert manifest is not None
    listed = {f["path"] for f in manifest["files"]}
    for name in ("README.md", "croissant.json", "metadata.parquet", "quarantine.parquet", "card/age_histogram.png"):
        assert name in listed
    assert any(p.startswith("parquet/split=train/") for p in listed)
    assert any(p.startswith("webdataset/test/") and p.endswith(".tar") for p in listed)
    assert any(p.startswith("validation/") for p in listed)
    assert sum(manifest["counts"].values()) == 60
    assert all(f["samples"] == f["rows"] for f in manifest["files"] if f["kind"] == "wds")
    assert {"parent", "validation", "patients", "sources", "config", "schema", "labels"} <= manifest.keys()
    assert not store.exists("releases/v1/_claim.json")
    latest = publish.read_latest(store)
    assert latest is not None
    assert latest["version"] == "v1"
    assert latest["manifest_sha256"] == hashlib.sha256(store.get_bytes("releases/v1/manifest.json")).hexdigest()


def test_cxr_verify_passes_with_read_only_credentials(released: dict[str, Any], s3_stack: StackInfo) -> None:
    done = releases.cxr(["verify", "--store", released["uri"], "--release", "latest"], _consumer_env(s3_stack))
    assert done.returncode == 0, done.stderr
    assert "release v1:" in done.stdout
    assert "match the manifest" in done.stdout


def test_republishing_the_same_content_is_a_no_op(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    manifest_before = store.get_bytes("releases/v1/manifest.json")
    latest_before = store.get_bytes(publish.LATEST)
    again = releases.publish(store, released["source"], "again", release="v1")
    assert again["published"] is False
    assert again["version"] == "v1"
    assert store.get_bytes("releases/v1/manifest.json") == manifest_before
    assert store.get_bytes(publish.LATEST) == latest_before
    assert not list(store.list("runs/again/"))


def test_publishing_other_content_under_a_published_version_is_refused(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    manifest_before = store.get_bytes("releases/v1/manifest.json")
    with pytest.raises(ReleaseConflictError, match="release v1 already exists"):
        releases.publish(store, released["source"], "other-seed", release="v1", seed=9)
    assert store.get_bytes("releases/v1/manifest.json") == manifest_before
    assert publish.verify_release(store, "v1").ok


def _race(cfg: RunConfig, shards: list[dict[str, Any]], curated: dict[str, Any]) -> str:
    """Plan (claim), convert and publish one run; return ``published``, ``no-op`` or the refusal."""
    try:
        for unit in tasks.plan_release(cfg, shards, curated):
            tasks.convert_unit(cfg, unit)
        return "published" if tasks.publish_release(cfg)["published"] else "no-op"
    except ReleaseConflictError as exc:
        return str(exc)


def test_two_publishers_racing_for_one_version_have_exactly_one_winner(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    cfgs = [
        releases.run_config(store, released["source"], f"racer-{seed}", release="race", seed=seed) for seed in (1, 2)
    ]
    prepared = []
    for cfg in cfgs:  # extract and curate first, so that the two runs race through claim, convert and publish
        shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
        prepared.append((cfg, shards, tasks.curate_metadata(cfg)))
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda args: _race(*args), prepared))
    assert outcomes.count("published") == 1, outcomes
    refusal = next(o for o in outcomes if o != "published")
    assert "release race already exists (or is being published) with different content" in refusal
    assert publish.verify_release(store, "race").ok
    winner = outcomes.index("published") + 1
    assert publish.read_manifest(store, "race")["config"]["seed"] == winner  # type: ignore[index]


def test_concurrent_manifest_writes_create_exactly_once(store: Store) -> None:
    def write(version_and_fingerprint: tuple[str, str]) -> str:
        version, fingerprint = version_and_fingerprint
        try:
            _sha, created = publish.write_manifest(store, version, {"input_fingerprint": fingerprint})
            return "created" if created else "no-op"
        except ReleaseConflictError:
            return "refused"

    with ThreadPoolExecutor(6) as pool:
        same = list(pool.map(write, [("m", "same")] * 6))
        other = list(pool.map(write, [("n", f"other-{i}") for i in range(6)]))
    assert sorted(same) == ["created"] + ["no-op"] * 5
    assert sorted(other) == ["created"] + ["refused"] * 5


def test_a_publish_that_fails_verification_leaves_latest_alone_and_a_rerun_repairs_it(released: dict[str, Any]) -> None:
    store: Store = released["store"]
    cfg = releases.run_config(store, released["source"], "broken-run", release="broken", seed=3)
    shards = [tasks.extract_shard(cfg, shard) for shard in tasks.discover(cfg)]
    for unit in tasks.plan_release(cfg, shards, tasks.curate_metadata(cfg)):
        tasks.convert_unit(cfg, unit)
    latest_before = store.get_bytes(publish.LATEST)
    shard = next(i.key for i in store.list("releases/broken/webdataset/") if i.key.endswith(".tar"))
    store.put_bytes(shard, b"not the shard that was converted")
    with pytest.raises(PipelineError, match=r"release broken failed verification, nothing was published: .*\.tar"):
        tasks.publish_release(cfg)
    assert store.get_bytes(publish.LATEST) == latest_before
    assert not store.exists("releases/broken/manifest.json")
    listing = publish.list_versions(store)
    assert "broken" in listing.incomplete
    assert "broken" not in listing.published
    rerun = tasks.run_all(cfg)  # the same run again: the damaged unit is converted again, then published
    assert rerun["published"] is True
    assert publish.verify_release(store, "broken").ok


def test_cxr_verify_names_tampered_missing_and_unlisted_objects(released: dict[str, Any], s3_stack: StackInfo) -> None:
    store: Store = released["store"]
    manifest = publish.read_manifest(store, "v1")
    assert manifest is not None
    part = next(f["path"] for f in manifest["files"] if f["path"].startswith("parquet/split=train/"))
    card = "card/label_prevalence.png"
    originals = {part: store.get_bytes(f"releases/v1/{part}"), card: store.get_bytes(f"releases/v1/{card}")}
    try:
        body = bytearray(originals[part])
        body[len(body) // 2] ^= 0xFF  # same size, one byte flipped
        store.put_bytes(f"releases/v1/{part}", bytes(body))
        store.delete(f"releases/v1/{card}")
        store.put_bytes("releases/v1/extra.txt", b"slipped in")
        done = releases.cxr(["verify", "--store", released["uri"], "--release", "v1"], _consumer_env(s3_stack))
        assert done.returncode == 1
        assert "FAILED verification" in done.stdout
        assert f"{part}: sha256 differs from the manifest" in done.stdout
        assert f"{card}: missing" in done.stdout
        assert "extra.txt: not in the manifest" in done.stdout
    finally:
        for path, original in originals.items():
            store.put_bytes(f"releases/v1/{path}", original)
        store.delete("releases/v1/extra.txt")
    assert publish.verify_release(store, "v1").ok


def test_releases_list_hides_incomplete_versions_unless_asked(released: dict[str, Any], s3_stack: StackInfo) -> None:
    store: Store = released["store"]
    publish.claim_version(store, releases.run_config(store, released["source"], "claimer", release="pending"), "fp")
    env = _consumer_env(s3_stack)
    plain = releases.cxr(["releases", "list", "--store", released["uri"]], env)
    assert plain.returncode == 0, plain.stderr
    assert "v1" in plain.stdout
    assert "pending" not in plain.stdout
    flagged = releases.cxr(["releases", "list", "--store", released["uri"], "--incomplete"], env)
    assert "incomplete (claimed or being written, not releases): " in flagged.stdout
    assert "pending" in flagged.stdout.split("incomplete")[-1]
    shown = releases.cxr(["releases", "show", "pending", "--store", released["uri"]], env)
    assert shown.returncode == 1
    assert "error: release pending is not published" in shown.stderr
