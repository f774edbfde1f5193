"""The one S3 client factory: every boto3 S3 client of the pipeline (and of its local tooling) is made here.

A client is built from a :class:`~pipeline.config.StoreConfig` (endpoint, keys, region) with the settings the
store relies on: path-style addressing, bounded timeouts, botocore's standard retries, a connection pool as
large as the upload workers, and checksums only where the store verifies them. Callers that must fail fast
(a readiness probe) pass fewer ``attempts`` and a shorter timeout; nothing else builds a client.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from pipeline.config import StoreConfig
from pipeline.errors import UsageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_POOL = 32
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
#: Tries of one request inside botocore (its own short back-off), before :meth:`Store.retrying` takes over.
ATTEMPTS = 6


def client_settings(
    max_pool: int = MAX_POOL,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    attempts: int = ATTEMPTS,
) -> Config:
    """botocore settings of a store client: retries, timeouts, pool, addressing and checksums."""
    return Config(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool,
        # Every upload carries a checksum header that the store verifies (SHA-256 or a part's CRC32) and the
        # signature covers; signing the payload too would hash every byte once more.
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def _check_key_pair(config: StoreConfig) -> None:
    """Both keys or neither: botocore would sign with half a pair and fail with a TypeError."""
    if bool(config.access_key_id) != bool(config.secret_access_key):
        given, missing = (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if config.access_key_id
            else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
        )
        raise UsageError(
            f"the object store's keys are half given: {given} is set but {missing} is not; set both (or neither, "
            "to use the store's Airflow connection or the default AWS credentials)"
        )


@functools.lru_cache(maxsize=16)
def make_client(
    config: StoreConfig,
    max_pool: int = MAX_POOL,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    attempts: int = ATTEMPTS,
) -> S3Client:
    """Create (once per configuration and process) a boto3 S3 client for the store ``config`` describes.

    Clients are thread-safe; creating one costs ~0.1 s of service-model loading, so it is cached.

    Raises:
        UsageError: the endpoint is not a URL, or only one of the two keys is given (names the setting to fix).
    """
    _check_key_pair(config)
    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        region_name=config.region,
    )
    settings = client_settings(max_pool, connect_timeout, read_timeout, attempts)
    try:
        return session.client("s3", endpoint_url=config.endpoint_url, config=settings)
    except ValueError as exc:  # botocore: "Invalid endpoint: ..."
        raise UsageError(
            f"object store endpoint {config.endpoint_url!r} is not a valid URL ({exc}): set AWS_ENDPOINT_URL (or the "
            "endpoint_url of the store's Airflow connection) to http(s)://HOST[:PORT]"
        ) from exc
