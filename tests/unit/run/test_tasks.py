"""pipeline.run.tasks: a run's configuration from DAG params or CLI options, and what a dry run skips."""

from __future__ import annotations

import re

import pytest

from pipeline.errors import EXIT_USAGE, UsageError, exit_code
from pipeline.run import tasks

BASE = {"source": "/data/nih", "store": "s3://bkt/p"}


def test_missing_params_take_the_pipelines_defaults() -> None:
    cfg = tasks.config_from_params(dict(BASE), "run-1")
    assert (cfg.source, cfg.store.uri, cfg.run_id) == ("/data/nih", "s3://bkt/p", "run-1")
    assert (cfg.split_mode, cfg.seed, cfg.variant_size, cfg.shard_target_bytes) == ("auto", 0, 256, 1 << 30)
    assert (cfg.release, cfg.shards, cfg.dry_run, cfg.force) == (None, None, False, False)


def test_empty_form_fields_count_as_not_given() -> None:
    cfg = tasks.config_from_params({**BASE, "release": "", "shards": None, "seed": None}, "r")
    assert (cfg.release, cfg.shards, cfg.seed) == (None, None, 0)


def test_params_become_the_run_config_a_run_holds() -> None:
    params = {**BASE, "release": "v1", "split_mode": "patient-hash", "seed": 7, "shards": ["1", 2],
              "variant_size": 0, "shard_size_mb": 4, "dry_run": True, "val_fraction": 0.25}  # fmt: skip
    cfg = tasks.config_from_params(params, "r", logical_date="2026-11-26T02:00:00+00:00")
    assert (cfg.release, cfg.split_mode, cfg.seed, cfg.shards) == ("v1", "patient-hash", 7, ("1", "2"))
    assert (cfg.variant_size, cfg.shard_target_bytes, cfg.dry_run, cfg.val_fraction) == (None, 4 << 20, True, 0.25)
    assert cfg.logical_date == "2026-11-26T02:00:00+00:00"


def test_the_source_falls_back_to_cxr_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXR_SOURCE", "/mirror")
    assert tasks.config_from_params({"store": "s3://bkt"}, "r").source == "/mirror"


def test_no_source_anywhere_is_a_usage_error_saying_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXR_SOURCE", raising=False)
    with pytest.raises(UsageError, match=r"no source given: pass the source location \(param 'source' or --source\)"):
        tasks.config_from_params({"store": "s3://bkt"}, "r")


def test_a_mistyped_option_is_refused_not_silently_ignored() -> None:
    with pytest.raises(UsageError, match=r"unknown run option\(s\) 'sead': the options are source, store, ") as caught:
        tasks.config_from_params({**BASE, "sead": 7}, "r")
    assert exit_code(caught.value) == EXIT_USAGE


def test_a_bad_value_is_a_usage_error_naming_its_flag_and_param() -> None:
    with pytest.raises(UsageError, match=r"--shard-size-mb, param 'shard_size_mb'\) 0 must lie in 1\.\.65536 MB"):
        tasks.config_from_params({**BASE, "shard_size_mb": 0}, "r")


def test_a_dry_run_skips_convert_and_publish(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="pipeline.run.tasks")
    assert tasks.should_publish(tasks.config_from_params(dict(BASE), "r")) is True
    assert tasks.should_publish(tasks.config_from_params({**BASE, "dry_run": True}, "r")) is False
    assert "nothing is claimed or published" in caplog.text


def test_a_run_outside_airflow_gets_a_fresh_dated_run_id() -> None:
    first, second = tasks.new_run_id(), tasks.new_run_id()
    assert re.fullmatch(r"cli-\d{8}T\d{6}-[0-9a-f]{6}", first)
    assert first != second
