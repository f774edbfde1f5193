"""The object store's settings from an Airflow connection, without importing Airflow.

In a deployment the store's endpoint and keys live in an Airflow connection of the Amazon Web
Services type (id ``cxr_store`` unless ``CXR_STORE_CONN_ID`` or the DAG's ``store_conn_id`` param
says otherwise): ``login`` is the access key id, ``password`` the secret key, and the extra JSON
holds ``endpoint_url`` (and optionally ``region_name``), exactly as the Amazon provider reads them.
The DAG looks the connection up at run time and hands its fields here as a plain dict; locally, with
no such connection, the ``AWS_*`` environment variables apply (:meth:`StoreConfig.from_env`).

Fields the connection leaves empty fall back to the environment, which is what boto3 itself would do.
The secret stays inside :class:`StoreConfig` (hidden from its ``repr``); nothing here logs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipeline.config import StoreConfig
from pipeline.errors import UsageError

#: What to do about a broken extra (the connection is the ``store_conn_id`` param's, else ``$CXR_STORE_CONN_ID``'s,
#: else ``cxr_store``).
_FIX_EXTRA = (
    "fix the extra of the store's Airflow connection (param store_conn_id, else $CXR_STORE_CONN_ID, else cxr_store), "
    'e.g. {"endpoint_url": "http://HOST:PORT"}'
)


def _extra(fields: Mapping[str, Any]) -> dict[str, Any]:
    raw = fields.get("extra") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"the store connection's extra is not JSON ({exc.msg} at character {exc.pos}): {_FIX_EXTRA}"
            ) from None
    if not isinstance(raw, dict):
        raise UsageError(f"the store connection's extra must be a JSON object, not {type(raw).__name__}: {_FIX_EXTRA}")
    return raw


def _endpoint(extra: Mapping[str, Any]) -> str | None:
    """``endpoint_url`` at the top of the extra, or under ``service_config.s3`` (both Amazon provider forms)."""
    service = (extra.get("service_config") or {}).get("s3") or {}
    value = extra.get("endpoint_url") or service.get("endpoint_url")
    return str(value) if value else None


def store_config(uri: str | None, fields: Mapping[str, Any] | None) -> StoreConfig:
    """The store's settings: the connection's fields over the ``AWS_*`` environment.

    Args:
        uri: The store URI (``s3://bucket/prefix``); ``$CXR_STORE`` when None.
        fields: ``login``, ``password`` and ``extra`` (dict or JSON text) of an Airflow connection,
            or None when there is no connection (then the environment alone applies).

    Raises:
        UsageError: No store URI is known, or the connection's extra is not a JSON object.
    """
    base = StoreConfig.from_env(uri)
    if fields is None:
        return base
    extra = _extra(fields)
    return replace(
        base,
        endpoint_url=_endpoint(extra) or base.endpoint_url,
        access_key_id=fields.get("login") or extra.get("aws_access_key_id") or base.access_key_id,
        secret_access_key=fields.get("password") or extra.get("aws_secret_access_key") or base.secret_access_key,
        region=str(extra.get("region_name") or base.region),
    )


def describe(config: StoreConfig) -> str:
    """A log-safe line naming the store, its endpoint and the key id's last four characters (never the secret)."""
    key = f"…{config.access_key_id[-4:]}" if config.access_key_id else "default chain"
    return f"{config.uri} at {config.endpoint_url or 'AWS'} (region {config.region}, key {key})"
