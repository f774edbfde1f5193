"""What a running local S3 stack is: endpoint, identities and ports, and the store settings to reach it.

The stack hands back a :class:`~pipeline.config.StoreConfig`; clients are built by the store package's factory
(:func:`pipeline.store.client.make_client`), the one S3 code path with the product's retry settings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import shlex
import string
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pipeline.config import StoreConfig
from pipeline.errors import StackError, UsageError

logger = logging.getLogger(__name__)

#: The store a :meth:`StackInfo.store_config` names when the caller names none (an S3 client ignores the bucket).
DEFAULT_STORE_URI = "s3://cxr-local"

__all__ = ["DEFAULT_STORE_URI", "StackError", "StackInfo"]


@dataclass(frozen=True)
class StackInfo:
    """How to reach a running (or recorded) local S3 stack."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    consumer_access_key_id: str
    consumer_secret_access_key: str
    pid: int
    data_dir: str
    ports: dict[str, int] = field(default_factory=dict)
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """Returns the AWS_* environment for the ``pipeline`` (read/write) identity."""
        return self._env(self.access_key_id, self.secret_access_key)

    def consumer_env(self) -> dict[str, str]:
        """Returns the AWS_* environment for the read-only ``consumer`` identity."""
        return self._env(self.consumer_access_key_id, self.consumer_secret_access_key)

    def store_config(self, uri: str = DEFAULT_STORE_URI, *, consumer: bool = False) -> StoreConfig:
        """The store settings of ``uri`` on this stack, for the ``pipeline`` (or the read-only ``consumer``) identity.

        Build clients from it with :func:`pipeline.store.client.make_client` and stores with
        :class:`pipeline.store.storage.Store`.
        """
        env = self.consumer_env() if consumer else self.env()
        return StoreConfig(uri, self.endpoint_url, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], self.region)

    def export_lines(self, consumer: bool = False) -> str:
        """Returns ``export K=V`` lines (values shell-quoted), e.g. for ``eval "$(cxr stack env)"``.

        Args:
            consumer: Export the consumer identity instead of the pipeline identity.
        """
        env = self.consumer_env() if consumer else self.env()
        return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())

    def to_json(self) -> str:
        """Serialises the info, secrets included, as JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        """Parses the output of :meth:`to_json`.

        Raises:
            UsageError: The text is not a JSON object with the expected fields.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise UsageError("stack info must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        values["ports"] = {str(k): int(v) for k, v in dict(values.get("ports", {})).items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise UsageError(f"incomplete stack info: {exc}") from exc

    def _env(self, key_id: str, secret: str) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": self.region,
        }


class _Keys(NamedTuple):
    access_key_id: str
    secret_access_key: str
    consumer_access_key_id: str
    consumer_secret_access_key: str


def _new_keys() -> _Keys:
    def key_id() -> str:
        return "CXR" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(17))

    return _Keys(key_id(), secrets.token_urlsafe(30), key_id(), secrets.token_urlsafe(30))
