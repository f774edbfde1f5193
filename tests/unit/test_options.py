"""pipeline.options: one table, and the three things made from it agree.

Every run option is a ``cxr run --help`` flag with the table's default, a DAG Param with the same default and
range, and a ``RunConfig`` field with the same default; a value the form refuses, a run refuses too.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pipeline import options
from pipeline.cli import commands
from pipeline.config import RunConfig, StoreConfig, check_version
from pipeline.errors import InvalidNameError, UsageError
from pipeline.run import tasks

ROOT = Path(__file__).resolve().parents[2]
CXR = str(Path(sys.executable).with_name("cxr"))


@pytest.fixture(scope="module")
def dag_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nih_cxr_release_dag", ROOT / "dags" / "nih_cxr_release.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in commands.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices["run"]
    return parser


def _form(dag_module: ModuleType) -> Any:
    from airflow.sdk.definitions.param import ParamsDict

    return ParamsDict(dag_module.PARAMS)


def test_every_option_is_a_cxr_run_flag_with_the_tables_default(run_parser: argparse.ArgumentParser) -> None:
    help_text = subprocess.run([CXR, "run", "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    args = run_parser.parse_args(["--source", "/s", "--store", "s3://bkt"])
    for option in options.cli_options():
        assert option.flag in help_text, f"{option.flag} missing from cxr run --help"
        expected = option.default if option.kind is not bool else False
        if option.required_on_cli:
            continue
        assert getattr(args, option.name) == expected, f"{option.flag}: default differs from the table"
    for option in options.OPTIONS:
        if option.airflow_only:
            assert option.flag not in help_text, f"{option.flag} is for the DAG only"


def test_the_dag_form_and_cxr_run_name_the_same_options_apart_from_the_airflow_connection(
    dag_module: ModuleType, run_parser: argparse.ArgumentParser
) -> None:
    # --approve answers --review's question on the terminal: no run option, so no form field either
    flags = {a.dest for a in run_parser._actions if a.option_strings} - {"help", "run_id", "json", "approve"}
    params = set(dag_module.PARAMS)
    assert params - flags == {o.name for o in options.OPTIONS if o.airflow_only} == {"store_conn_id"}
    assert flags == params - {"store_conn_id"}
    assert list(dag_module.PARAMS) == [o.name for o in options.OPTIONS], "the form shows the table's order"


def test_every_option_is_a_dag_param_with_the_same_default_range_and_help(dag_module: ModuleType) -> None:
    for option in options.OPTIONS:
        param = dag_module.PARAMS[option.name]
        assert param.value == option.default, option.name
        schema = param.schema
        assert schema["title"] == option.title
        assert option.help[1:] in param.description
        if option.choices:
            assert tuple(schema["enum"]) == option.choices
        if option.maximum is not None:
            assert schema.get("maximum", schema.get("exclusiveMaximum")) == option.maximum, option.name


def test_every_option_sets_a_run_config_field_with_the_same_default() -> None:
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for option in options.OPTIONS:
        if option.airflow_only:
            assert option.config_field == ""
            continue
        field = fields[option.config_field]
        if field.default is dataclasses.MISSING:  # source, store: required; a run falls back to the environment
            assert option.default is None
            assert option.env
        else:
            assert field.default == options.default_of(option.name), option.name
    assert {o.name: o.default for o in options.OPTIONS} == tasks.PARAM_DEFAULTS


def _run_refuses(name: str, value: object) -> bool:
    try:
        tasks.config_from_params({"source": "/s", "store": "s3://bkt", name: value}, "r")
    except UsageError:
        return True
    return False


def _form_refuses(dag_module: ModuleType, name: str, value: object) -> bool:
    from airflow.sdk.exceptions import ParamValidationError

    try:
        _form(dag_module)[name] = value
    except ParamValidationError:
        return True
    return False


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", -1), ("seed", 0), ("seed", 123456789), ("variant_size", 0), ("variant_size", 8),
     ("variant_size", 15), ("variant_size", 16), ("variant_size", 1024), ("variant_size", 1025),
     ("shard_size_mb", 0), ("shard_size_mb", 1), ("shard_size_mb", 65536), ("shard_size_mb", 65537),
     ("min_shards", 0), ("min_shards", 1), ("min_shards", 4096), ("min_shards", 4097),
     ("val_fraction", 0.0), ("val_fraction", 0.5), ("val_fraction", 1.0), ("test_fraction", -0.01),
     ("split_mode", "official"), ("split_mode", "random")],
)  # fmt: skip
def test_the_form_refuses_exactly_what_a_run_refuses(dag_module: ModuleType, name: str, value: object) -> None:
    assert _form_refuses(dag_module, name, value) == _run_refuses(name, value)


def test_the_form_refuses_exactly_the_release_names_a_run_refuses(dag_module: ModuleType) -> None:
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    pattern = dag_module.VERSION_PATTERN
    assert pattern == options.VERSION_FORM_PATTERN
    for version in ["v1", "2026.11.26.2", "2026.12.01-hotfix", "latest2", "json", "v1.jsonx"]:
        assert Param(None, type=["null", "string"], pattern=pattern).resolve(version) == version
        assert check_version(version) == version
    for version in ["v1\n", "latest", "LATEST", "x.json", "../v1", "a/b", "v١", "v" * 65]:
        with pytest.raises(ParamValidationError):
            Param(None, type=["null", "string"], pattern=pattern).resolve(version)
        with pytest.raises(InvalidNameError):
            check_version(version)


@pytest.mark.parametrize(
    ("name", "value", "held"),
    [("variant_size", 0, None), ("variant_size", "64", 64), ("shard_size_mb", 2, 2 << 20), ("shards", ["3", 4],
     ("3", "4")), ("shards", [], None), ("force", "false", False), ("dry_run", "true", True), ("seed", "7", 7),
     ("min_shards", "16", 16)],
)  # fmt: skip
def test_values_from_a_form_a_flag_or_a_json_conf_become_what_the_run_holds(name: str, value: Any, held: Any) -> None:
    assert options.option(name).to_field(value) == held


@pytest.mark.parametrize(("name", "value"), [("seed", "seven"), ("force", "maybe"), ("variant_size", True)])
def test_a_value_of_the_wrong_kind_is_a_usage_error_naming_the_option(name: str, value: Any) -> None:
    option = options.option(name)
    with pytest.raises(UsageError, match=rf"\({option.flag}, param '{name}'\) takes"):
        option.to_field(value)


def test_a_run_config_made_from_the_table_alone_holds_the_table_defaults() -> None:
    cfg = RunConfig(source="/s", store=StoreConfig("s3://bkt"))
    for option in options.config_options():
        if option.name not in ("source", "store"):
            assert getattr(cfg, option.config_field) == options.default_of(option.name), option.name


def test_the_clean_up_setting_is_hours_or_nothing() -> None:
    assert options.clean_idle_hours({}) is None
    assert options.clean_idle_hours({"CXR_CLEAN_IDLE_HOURS": "0"}) is None, "0 declares no clean-up task"
    assert options.clean_idle_hours({"CXR_CLEAN_IDLE_HOURS": " 48 "}) == 48.0
    for value in ("-1", "two days", "inf", "nan"):
        with pytest.raises(UsageError, match=r"CXR_CLEAN_IDLE_HOURS=.* must be a number of hours"):
            options.clean_idle_hours({"CXR_CLEAN_IDLE_HOURS": value})
