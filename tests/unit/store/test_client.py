"""The one S3 client factory: a client made from a StoreConfig talks to that endpoint with the store's settings."""

from __future__ import annotations

import pytest

from pipeline.config import StoreConfig
from pipeline.errors import UsageError
from pipeline.store.client import ATTEMPTS, make_client

CONFIG = StoreConfig("s3://cxr-demo/team", "http://127.0.0.1:8333", "AKID", "secret", "eu-west-1")


def test_a_client_reaches_the_configured_endpoint_with_the_configured_keys() -> None:
    client = make_client(CONFIG)
    assert client.meta.endpoint_url == "http://127.0.0.1:8333"
    assert client.meta.region_name == "eu-west-1"
    credentials = client._request_signer._credentials  # what every request is signed with
    assert (credentials.access_key, credentials.secret_key) == ("AKID", "secret")


def test_a_client_carries_the_store_settings() -> None:
    settings = make_client(CONFIG).meta.config
    assert settings.retries == {"total_max_attempts": ATTEMPTS, "mode": "standard"}
    assert (settings.connect_timeout, settings.read_timeout, settings.max_pool_connections) == (5.0, 60.0, 32)
    assert settings.s3 == {"addressing_style": "path", "payload_signing_enabled": False}  # SeaweedFS needs path style
    assert settings.request_checksum_calculation == "when_required"


def test_a_probe_can_ask_for_a_fast_failing_client() -> None:
    """The local stack's readiness probe: one attempt, a short timeout, from the same factory."""
    settings = make_client(CONFIG, connect_timeout=2.0, read_timeout=2.0, attempts=1).meta.config
    assert settings.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert (settings.connect_timeout, settings.read_timeout) == (2.0, 2.0)


def test_one_client_per_configuration_and_settings() -> None:
    """Creating a client costs ~0.1 s; a process reuses it (clients are thread-safe)."""
    assert make_client(CONFIG) is make_client(StoreConfig(**{**CONFIG.__dict__}))
    assert make_client(CONFIG, 16) is not make_client(CONFIG)
    assert make_client(CONFIG, 16).meta.config.max_pool_connections == 16


def test_a_bad_endpoint_is_a_usage_error_naming_the_setting() -> None:
    with pytest.raises(UsageError, match=r"'not a url' is not a valid URL .*set AWS_ENDPOINT_URL"):
        make_client(StoreConfig("s3://cxr-demo", "not a url"))


@pytest.mark.parametrize(
    ("key_id", "secret", "named"),
    [
        (None, "wrong", "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"),
        ("AKID", None, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
    ],
)
def test_half_a_key_pair_is_a_usage_error_naming_the_missing_key(
    key_id: str | None, secret: str | None, named: str
) -> None:
    """botocore would sign with half a pair and fail with a TypeError deep inside a request."""
    with pytest.raises(UsageError, match=named):
        make_client(StoreConfig("s3://cxr-demo", "http://127.0.0.1:8333", key_id, secret))
