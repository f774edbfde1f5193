"""What a running local S3 stack is: endpoint, identities and ports; clients for it."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import shlex
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The local S3 stack could not be started, reached or stopped."""


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
            ValueError: The text is not a JSON object with the expected fields.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("stack info must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        values["ports"] = {str(k): int(v) for k, v in dict(values.get("ports", {})).items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"incomplete stack info: {exc}") from exc

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


def make_client(
    info: StackInfo,
    *,
    consumer: bool = False,
    timeout: float = 10.0,
    attempts: int = 3,
) -> S3Client:
    """Builds a signed boto3 S3 client for the stack.

    Args:
        info: The stack to talk to.
        consumer: Use the read-only consumer identity instead of the pipeline identity.
        timeout: Connect and read timeout in seconds.
        attempts: Total attempts per request (1 disables retries).
    """
    env = info.consumer_env() if consumer else info.env()
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        "s3",
        endpoint_url=info.endpoint_url,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=info.region,
        config=config,
    )
