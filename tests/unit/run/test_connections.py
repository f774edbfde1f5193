"""The store's settings from an Airflow connection's fields (plain dicts: no Airflow here)."""

from __future__ import annotations

import pytest

from pipeline import config
from pipeline.run import connections


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env-endpoint:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("CXR_STORE_CONN_ID", raising=False)


def test_connection_fields_win_over_the_environment(aws_env: None) -> None:
    fields = {"login": "CONNKEY", "password": "conn-secret", "extra": {"endpoint_url": "http://s3:8333"}}
    store = connections.store_config("s3://bucket/prefix", fields)
    assert (store.endpoint_url, store.access_key_id, store.secret_access_key) == (
        "http://s3:8333",
        "CONNKEY",
        "conn-secret",
    )
    assert store.uri == "s3://bucket/prefix"


def test_without_a_connection_the_environment_applies(aws_env: None) -> None:
    store = connections.store_config("s3://bucket", None)
    assert (store.endpoint_url, store.access_key_id, store.secret_access_key) == (
        "http://env-endpoint:9000",
        "ENVKEY",
        "env-secret",
    )


def test_extra_as_json_text_and_in_service_config_with_region(aws_env: None) -> None:
    extra = '{"service_config": {"s3": {"endpoint_url": "http://svc:1"}}, "region_name": "eu-west-1"}'
    store = connections.store_config("s3://bkt", {"login": None, "password": None, "extra": extra})
    assert store.endpoint_url == "http://svc:1"
    assert store.region == "eu-west-1"
    assert store.access_key_id == "ENVKEY", "empty connection fields fall back to the environment"


def test_a_broken_extra_is_a_clear_error(aws_env: None) -> None:
    with pytest.raises(ValueError, match="not JSON"):
        connections.store_config("s3://bkt", {"extra": "{endpoint_url:"})


def test_the_secret_never_shows_in_repr_or_the_log_line(aws_env: None) -> None:
    store = connections.store_config("s3://bkt", {"login": "AKIAEXAMPLE1234", "password": "top-secret", "extra": {}})
    assert "top-secret" not in repr(store)
    line = connections.describe(store)
    assert "top-secret" not in line
    assert "AKIAEXAMPLE1234" not in line
    assert line.endswith("key …1234)")


def test_connection_id_from_param_env_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXR_STORE_CONN_ID", raising=False)
    assert config.store_conn_id() == "cxr_store"
    monkeypatch.setenv("CXR_STORE_CONN_ID", "prod_store")
    assert config.store_conn_id() == "prod_store"
    assert config.store_conn_id("other") == "other"
