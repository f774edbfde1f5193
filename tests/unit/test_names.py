"""Names a user or a mirror hands us: image ids, release versions, store locations, and the order ``latest`` follows."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline import nih
from pipeline.config import (
    InvalidNameError,
    RunConfig,
    StoreConfig,
    check_version,
    check_version_arg,
    split_s3_uri,
    split_store_uri,
)
from pipeline.curate import normalise
from pipeline.errors import PipelineError, UsageError
from pipeline.publish import versions as publish
from pipeline.read.client import ReleaseClient

ROOT = Path(__file__).resolve().parents[2]
ARABIC_INDIC = "٠٠٠٠٠٠٠١_٠٠٠.png"  # U+0660.. : \d and int() take these
FULLWIDTH = "０００００００１_０００.png"  # U+FF10..
LOOK_ALIKES = [ARABIC_INDIC, FULLWIDTH, "0000000١_000.png", "00000001_00٣.png", "00000001_000.png\n"]


# --- image ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_digits_are_not_image_ids(name: str) -> None:
    assert not nih.IMAGE_NAME_RE.match(name)
    assert nih.image_ids(name) is None


def test_an_ascii_image_name_gives_its_patient_and_follow_up() -> None:
    assert nih.image_ids("00030805_012.png") == (30805, 12)


@pytest.mark.parametrize("suite", ["data_entry", "bbox", "split_lists"])
def test_validation_suites_refuse_look_alike_image_names(suite: str) -> None:
    payload = json.loads((ROOT / "expectations" / f"{suite}.json").read_text())
    regexes = [spec["kwargs"]["regex"] for spec in payload["expectations"] if "regex" in spec["kwargs"]]
    assert regexes, f"{suite} has no image-name expectation"
    for regex in regexes:
        names = pd.Series(["00000001_000.png", ARABIC_INDIC, FULLWIDTH])
        assert names.str.match(regex).tolist() == [True, False, False]  # GX matches with pandas, as here


def test_metadata_ids_in_unicode_digits_are_counted_unparsable_not_silently_null() -> None:
    notes: dict[str, int] = {}
    parsed = normalise.to_int(pd.Series(["12", "٠٠١٢", "１２"]), notes, "patient_id")
    assert parsed.tolist()[0] == 12
    assert parsed.isna().tolist() == [False, True, True]
    assert notes["unparsable_patient_id"] == 2


def test_shard_names_take_ascii_digits_only() -> None:
    assert nih.shard_number("images_001.zip") == 1
    assert nih.shard_number("images_٠٠١.zip") is None
    assert nih.shard_number("images_001.zip\n") is None


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


def _dag_version_pattern() -> str:
    spec = importlib.util.spec_from_file_location("nih_cxr_release_dag", ROOT / "dags" / "nih_cxr_release.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pattern: str = module.VERSION_PATTERN
    return pattern


def test_dag_trigger_form_refuses_exactly_what_a_run_refuses() -> None:
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    pattern = _dag_version_pattern()
    for version in ["v1", "2026.11.26.2", "2026.12.01-hotfix", "latest2", "json", "v1.jsonx"]:
        assert Param(None, type=["null", "string"], pattern=pattern).resolve(version) == version
    for version in ["v1\n", "latest", "LATEST", "x.json", "../v1", "a/b", "v١", "v" * 65]:
        with pytest.raises(ParamValidationError):
            Param(None, type=["null", "string"], pattern=pattern).resolve(version)
        with pytest.raises(InvalidNameError):
            check_version(version)


def test_no_path_outside_the_release_folder_on_download(tmp_path: Path) -> None:
    client = ReleaseClient("s3://bkt/p")
    release = publish_release_stub(client, [{"path": "parquet/../../../escape.parquet", "kind": "parquet"}])
    with pytest.raises(PipelineError, match="not a plain relative path"):
        release.download(tmp_path)
    assert list(tmp_path.iterdir()) == []


def publish_release_stub(client: ReleaseClient, files: list[dict[str, Any]]) -> Any:
    from pipeline.read.client import Release

    return Release(client, "v1", {"files": [{"size": 1, "sha256": "0" * 64, **f} for f in files]})


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


# --- the order latest follows --------------------------------------------------------------------------------


def rank(version: str, published: str) -> publish.LatestRank:
    return publish.latest_rank(version, published)


def test_date_names_and_other_names_are_told_apart() -> None:
    assert publish.version_date("2026.11.26") == dt.date(2026, 11, 26)
    assert publish.version_date("2026.11.26.2") == dt.date(2026, 11, 26)
    for other in ("v1", "rc1", "2026.12.01-hotfix", "2026.13.45", "2026.11.26.2.1", "20261126"):
        assert publish.version_date(other) is None, other


@pytest.mark.parametrize(
    ("newer", "older", "case"),
    [
        (("2026.11.27", "2026-11-27T03:00:00+00:00"), ("2026.11.26", "2026-11-26T03:00:00+00:00"), "nightly"),
        (("2026.11.26", "2026-11-27T03:00:00+00:00"), ("2026.11.20", "2026-11-28T03:00:00+00:00"), "backfill"),
        (("2026.11.26.2", "2026-11-26T09:00:00+00:00"), ("2026.11.26", "2026-11-26T03:00:00+00:00"), "same day"),
        (("v1", "2026-11-27T10:00:00+00:00"), ("2026.11.27", "2026-11-27T03:00:00+00:00"), "named after nightly"),
        (("2026.11.28", "2026-11-28T03:00:00+00:00"), ("v1", "2026-11-27T10:00:00+00:00"), "nightly after named"),
        (("2026.11.27", "2026-11-28T03:00:00+00:00"), ("v1", "2026-11-27T10:00:00+00:00"), "same-day nightly late"),
        (("rc2", "2026-11-27T10:00:01+00:00"), ("rc1", "2026-11-27T10:00:00+00:00"), "named after named"),
        (("2026.12.01-hotfix", "2026-12-02T08:00:00+00:00"), ("2026.12.01", "2026-12-01T03:00:00+00:00"), "hotfix"),
        (("v1", "2026-11-27T10:00:00+00:00"), ("2026.11.26", "2026-11-27T11:00:00+00:00"), "late backfill"),
    ],
)
def test_latest_order(newer: tuple[str, str], older: tuple[str, str], case: str) -> None:
    assert rank(*newer) > rank(*older), case


def test_a_backfill_never_ranks_above_a_named_release_of_a_later_day() -> None:
    named = rank("rc1", "2026-11-27T10:00:00+00:00")
    for day in range(1, 27):
        assert rank(f"2026.11.{day:02d}", "2026-11-30T00:00:00+00:00") < named


def test_times_compare_across_offsets_and_a_missing_time_ranks_first() -> None:
    assert rank("v2", "2026-11-27T12:00:00+02:00") < rank("v1", "2026-11-27T11:00:00+00:00")
    assert rank("v1", None) < rank("v0", "2026-01-01T00:00:00+00:00")


def test_cxr_validate_blocks_a_data_entry_row_with_a_look_alike_image_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.curate.validate import validate_main
    from tests.reference import DATA_ENTRY_FILE

    lines = DATA_ENTRY_FILE.read_text().splitlines(keepends=True)
    lines[1] = ARABIC_INDIC + lines[1][lines[1].index(",") :]
    path = tmp_path / DATA_ENTRY_FILE.name
    path.write_text("".join(lines))
    assert validate_main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "[blocking] data_entry.image_index_pattern" in out
    assert f"line=2, image_index='{ARABIC_INDIC}'" in out
