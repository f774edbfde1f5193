"""The deployment's secrets file: ``docker/.env`` written from ``docker/env.example`` with fresh secrets.

``cxr deploy-env`` (default ``docker/.env``) copies the example line by line and fills each secret the example
leaves empty (a setting named ``*_PASSWORD``, ``*_SECRET`` or ``*_KEY``) with a new random value: a Fernet key
for ``AIRFLOW_FERNET_KEY`` (32 random bytes, URL-safe base64, what ``cryptography.fernet.Fernet.generate_key``
makes), a URL-safe token of 32 bytes for every other one (passwords, the JWT secret, the store's keys). Other
settings (ports, the bucket, optional ones left empty) are kept as they are. An existing file is never
overwritten: its Fernet key decrypts the connections already stored, and losing it
loses them. The file is created readable by its owner only.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import UsageError

__all__ = ["FERNET_SETTING", "fill_secrets", "write_env"]

log = logging.getLogger(__name__)

#: The one setting whose value must be a Fernet key, not any token.
FERNET_SETTING = "AIRFLOW_FERNET_KEY"
_EMPTY = re.compile(r"^([A-Z][A-Z0-9_]*_(?:PASSWORD|SECRET|KEY))=\s*$")


def _secret(name: str) -> str:
    """A new random value for the setting ``name``."""
    if name == FERNET_SETTING:
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_urlsafe(32)


def fill_secrets(example: str, secret: Callable[[str], str] = _secret) -> tuple[str, list[str]]:
    """``example`` with every empty secret's ``NAME=`` line given ``secret(NAME)``; and the names filled, in order."""
    lines, filled = [], []
    for line in example.splitlines():
        found = _EMPTY.match(line)
        if found:
            filled.append(found.group(1))
        lines.append(f"{found.group(1)}={secret(found.group(1))}" if found else line)
    return "\n".join(lines) + "\n", filled


def write_env(example: Path, dest: Path) -> list[str]:
    """Write ``dest`` (mode 0600) from ``example`` with fresh secrets; return the names of the secrets made.

    Raises:
        UsageError: ``dest`` exists already, or ``example`` is missing.
    """
    if not example.is_file():
        raise UsageError(f"{example} is missing: run this from the repository's root (it reads docker/env.example)")
    text, filled = fill_secrets(example.read_text())
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{dest} exists already and is kept: its AIRFLOW_FERNET_KEY decrypts the stored connections. To start "
            f"over, stop the deployment, move {dest} away and run this again"
        ) from None
    with os.fdopen(fd, "w") as out:
        out.write(text)
    log.info("wrote %s with %d new secrets: %s", dest, len(filled), ", ".join(filled))
    return filled
