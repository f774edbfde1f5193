"""pipeline.config: the names a user gives (release versions, store locations) and a run's settings."""

from __future__ import annotations

import pytest

from pipeline import config
from pipeline.config import (
    RunConfig,
    StoreConfig,
    check_version,
    check_version_arg,
    source_store_config,
    split_s3_uri,
    split_store_uri,
)
from pipeline.errors import EXIT_USAGE, InvalidNameError, UsageError, exit_code

# --- release versions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "rc1", "2026.11.26", "2026.11.26.2", "2026.12.01-hotfix", "A_b-1.x"])
def test_good_versions_pass(version: str) -> None:
    assert check_version(version) == version
    assert RunConfig(source="/s", store=StoreConfig("s3://bkt"), release=version).release == version


@pytest.mark.parametrize(
    ("version", "why"),
    [
        ("v1\n", "must match"),
        ("v1 ", "must match"),
        ("../v1", "must match"),
        ("a/b", "must match"),
        ("..", "must match"),
        ("", "must match"),
        ("v" * 65, "must match"),
        ("v١", "must match"),
        ("latest", "is reserved"),
        ("Latest", "is reserved"),
        ("x.json", "is reserved"),
        ("latest.JSON", "is reserved"),
    ],
)
def test_bad_and_reserved_versions_are_usage_errors(version: str, why: str) -> None:
    with pytest.raises(InvalidNameError, match=why) as caught:
        check_version(version)
    assert isinstance(caught.value, UsageError)
    with pytest.raises(InvalidNameError):
        RunConfig(source="/s", store=StoreConfig("s3://bkt"), release=version)


def test_latest_is_accepted_where_a_release_is_looked_up_but_not_as_a_name() -> None:
    assert check_version_arg("latest") == "latest"
    with pytest.raises(InvalidNameError):
        check_version_arg("../latest")


# --- store locations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("s3://bkt", ("bkt", "")), ("s3://bkt/", ("bkt", "")), ("s3://bkt/p/q/", ("bkt", "p/q")),
     ("s3://my.bucket-1/nih-cxr", ("my.bucket-1", "nih-cxr"))],
)  # fmt: skip
def test_good_store_locations_split_cleanly(uri: str, expected: tuple[str, str]) -> None:
    assert split_store_uri(uri) == expected
    assert StoreConfig(uri).uri == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("s3://bkt/p//q", r"empty segment \('//'\)"),
        ("s3://bkt//p", r"empty segment"),
        ("s3://bkt/p/./q", r"a '\.' segment"),
        ("s3://bkt/p/../q", r"a '\.\.' segment"),
        ("s3://bkt/..", r"a '\.\.' segment"),
        ("s3://bkt/p?versionId=1", r"'\?', '#' or control character"),
        ("s3://bkt/p/releases/v1", r"inside a store's layout \('releases/' holds published releases\)"),
        ("s3://bkt/releases", r"'releases/' holds published releases"),
        ("s3://bkt/raw/shards", r"'raw/' holds the raw zone"),
        ("s3://bkt/p/runs/x", r"'runs/' holds run workspaces"),
        ("s3://Bad_Bucket/p", r"'Bad_Bucket' is not a valid S3 bucket name \(use 3-63 lowercase"),
        ("s3://ab/p", r"not a valid S3 bucket name"),
        ("s3://-bkt/p", r"not a valid S3 bucket name"),
        ("s3://a..b/p", r"two dots in a row"),
        ("s3://192.168.0.1/p", r"may not look like an IP address"),
        ("s3://xn--bucket/p", r"prefix or suffix S3 reserves"),
        ("s3:///p", r"'' is not a valid S3 bucket name"),
        ("http://bkt/p", r"is not an s3://BUCKET\[/PREFIX\] URI"),
    ],
)
def test_bad_store_locations_are_refused_with_the_reason(uri: str, why: str) -> None:
    with pytest.raises(InvalidNameError, match=why):
        StoreConfig(uri)


def test_a_source_may_sit_in_a_folder_named_raw_but_not_behind_a_bad_path() -> None:
    assert split_s3_uri("s3://mirror/raw/nih") == ("mirror", "raw/nih")
    with pytest.raises(InvalidNameError, match="empty segment"):
        split_s3_uri("s3://mirror/raw//nih")


# --- settings from the environment ----------------------------------------------------------------------------


def test_no_store_anywhere_is_a_usage_error_that_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXR_STORE", raising=False)
    with pytest.raises(UsageError, match=r"pass --store s3://BUCKET\[/PREFIX\].*or set CXR_STORE") as caught:
        StoreConfig.from_env(None)
    assert exit_code(caught.value) == EXIT_USAGE


def test_store_settings_come_from_the_aws_variables_and_the_secret_stays_out_of_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXR_STORE", "s3://from-env/p")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    store = StoreConfig.from_env(None)
    assert (store.uri, store.endpoint_url, store.access_key_id, store.region) == (
        "s3://from-env/p",
        "http://127.0.0.1:8333",
        "AKIAEXAMPLE",
        "us-east-1",
    )
    assert "very-secret" not in repr(store)


def test_an_s3_source_takes_its_own_endpoint_and_only_its_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://store:1")
    monkeypatch.setenv("CXR_SOURCE_ENDPOINT_URL", "http://mirror:2")
    source = source_store_config("s3://mirror/raw/nih")  # a folder named raw is fine for a source
    assert (source.uri, source.endpoint_url) == ("s3://mirror", "http://mirror:2")


# --- a run's settings ----------------------------------------------------------------------------------------


def test_run_defaults_are_those_a_user_reads_in_the_help() -> None:
    cfg = RunConfig(source="/s", store=StoreConfig("s3://bkt"))
    assert (cfg.split_mode, cfg.seed, cfg.val_fraction, cfg.test_fraction) == ("auto", 0, 0.1, 0.2)
    assert (cfg.variant_size, cfg.shard_target_bytes) == (256, 1 << 30)
    assert (cfg.force, cfg.dry_run, cfg.release, cfg.shards) == (False, False, None, None)
    assert cfg.with_run_id("scheduled__x").run_id == "scheduled__x"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"split_mode": "random"}, r"Split mode \(--split-mode, param 'split_mode'\) 'random' is not one of auto"),
        ({"variant_size": 8}, r"Variant size \(--variant-size.*\) 8 must lie in 16\.\.1024 px, or 0 for none"),
        ({"variant_size": 4096}, r"4096 must lie in 16\.\.1024 px"),
        ({"shard_target_bytes": 0}, r"Shard size \(MB\) \(--shard-size-mb.*\) 0 must lie in 1\.\.65536 MB"),
        ({"val_fraction": 1.0}, r"Validation share \(--val-fraction.*\) 1 must lie in 0 to under 1"),
        ({"test_fraction": -0.1}, r"Test share .* -0\.1 must lie in 0 to under 1"),
        ({"seed": -1}, r"Split seed \(--seed, param 'seed'\) -1 must lie in 0 or more"),
    ],
)
def test_settings_out_of_range_are_usage_errors_naming_the_option(changes: dict[str, object], why: str) -> None:
    with pytest.raises(UsageError, match=why) as caught:
        RunConfig(source="/s", store=StoreConfig("s3://bkt"), **changes)  # type: ignore[arg-type]
    assert exit_code(caught.value) == EXIT_USAGE


def test_a_variant_can_be_turned_off() -> None:
    assert RunConfig(source="/s", store=StoreConfig("s3://bkt"), variant_size=None).variant_size is None


def test_store_connection_id_from_the_environment_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXR_STORE_CONN_ID", raising=False)
    assert config.store_conn_id() == config.DEFAULT_STORE_CONN_ID == "cxr_store"
