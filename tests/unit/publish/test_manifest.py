"""The manifest lists each file's path, size and SHA-256, never the upload checksum publishing checked it by."""

from __future__ import annotations

from pipeline.plan.planning import Plan
from pipeline.publish.manifest import build_manifest
from pipeline.run import tasks
from pipeline.store.multipart import UPLOAD_CRC32


def test_the_files_lose_their_upload_checksum_and_keep_the_rest() -> None:
    cfg = tasks.config_from_params({"source": "src", "store": "s3://bucket/prefix"}, run_id="run")
    plan = Plan(run_id="run", version="v1", fingerprint="fp", unchanged=False, split_mode="official")
    multipart = {"path": "b.tar", "size": 9, "sha256": "ab" * 32, "rows": 2, "kind": "wds", UPLOAD_CRC32: "x-2"}
    single = {"path": "a.parquet", "size": 3, "sha256": "cd" * 32, "rows": 1, "kind": "parquet"}
    manifest = build_manifest(cfg, plan, [multipart, single], {})
    assert manifest["files"] == [single, {k: v for k, v in multipart.items() if k != UPLOAD_CRC32}]
    assert UPLOAD_CRC32 in multipart  # the caller's entries are left as they were
