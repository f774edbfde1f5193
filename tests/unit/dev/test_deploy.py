"""``cxr deploy-env``: docker/.env from docker/env.example, every secret new and random, never overwritten."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pipeline.cli.commands import main
from pipeline.dev.deploy import FERNET_SETTING, fill_secrets, write_env
from pipeline.errors import UsageError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docker" / "env.example"


def _settings(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))


def test_every_setting_compose_requires_gets_a_new_secret(tmp_path: Path) -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker" / "compose.yaml").read_text()))
    example = _settings(EXAMPLE.read_text())
    assert required <= {name for name, value in example.items() if value == ""}  # the example ships them empty
    first, second = _settings(fill_secrets(EXAMPLE.read_text())[0]), _settings(fill_secrets(EXAMPLE.read_text())[0])
    for name in required:
        assert len(first[name]) >= 32, name
        assert first[name] != second[name], f"{name} is not random"
    Fernet(first[FERNET_SETTING].encode())  # a key Airflow's Fernet accepts
    kept = {name: value for name, value in example.items() if name not in required}
    assert {name: first[name] for name in kept} == kept  # ports, bucket, users, optional settings: as they were
    assert "CXR_DEADLINE_FILE" in kept  # an optional setting left empty is no secret


def test_write_env_is_private_and_never_overwrites(tmp_path: Path) -> None:
    dest = tmp_path / ".env"
    filled = write_env(EXAMPLE, dest)
    assert {"AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"} <= set(filled)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    before = dest.read_text()
    with pytest.raises(UsageError, match="exists already and is kept"):
        write_env(EXAMPLE, dest)
    assert dest.read_text() == before


def test_the_command_writes_beside_the_example_and_refuses_a_second_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "env.example").write_text(EXAMPLE.read_text())
    dest = tmp_path / ".env"
    assert main(["deploy-env", str(dest)]) == 0
    assert "AIRFLOW_FERNET_KEY" in capsys.readouterr().out
    assert _settings(dest.read_text())["AIRFLOW_JWT_SECRET"]
    assert main(["deploy-env", str(dest)]) == 2
    assert "exists already" in capsys.readouterr().err
