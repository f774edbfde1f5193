"""``cxr demo`` and ``cxr ui``: the whole road on one machine, with nothing to install by hand.

The demo writes a synthetic mirror, starts the local S3 endpoint in the background, runs the
``nih_cxr_release`` DAG through Airflow (``airflow dags test``, SQLite metadata), and prints where
the release is and what to try next. Its data stays in the workspace (default ``.cxr/``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from pipeline.dev import stack
from pipeline.dev.airflow.components import dags_test
from pipeline.dev.airflow.db import migrate
from pipeline.dev.airflow.installation import LocalAirflow
from pipeline.dev.airflow.settings import API_PORT, CelerySettings, admin_password, airflow_env
from pipeline.errors import LocalAirflowError
from pipeline.plan.split import SPLITS
from pipeline.publish.latest import read_latest
from pipeline.publish.manifest import read_manifest
from pipeline.store.storage import Store

DEMO_BUCKET = "s3://cxr-demo"
DAG_ID = "nih_cxr_release"


def _say(message: str) -> None:
    print(message, flush=True)


def _ensure_source(workdir: Path, images: int) -> Path:
    from pipeline.dev.synth import SynthConfig, synthesize

    source = workdir / "source" / f"synthetic-{images}"
    if not (source / "Data_Entry_2017.csv").exists():
        _say(f"1/4 writing a synthetic mirror of {images} images to {source}")
        synthesize(SynthConfig(dest=source, images=images, overwrite=True))
    else:
        _say(f"1/4 reusing the synthetic mirror in {source}")
    return source


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _run_dag(workdir: Path, source: Path, info: stack.StackInfo) -> bool:
    home = workdir / "airflow"
    env = airflow_env(home, extra=info.env())
    log_path = workdir / "logs" / "demo-dag-test.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _say(f"3/4 running the {DAG_ID} DAG through Airflow (log: {log_path})")
    migrate(env, log_path)
    started = time.monotonic()
    code = dags_test(env, DAG_ID, {"source": str(source.resolve()), "store": DEMO_BUCKET}, log_path)
    if code != 0:
        _say(f"the DAG run failed (exit {code}); the last lines of {log_path}:\n{_tail(log_path)}")
        return False
    _say(f"    done in {time.monotonic() - started:.0f} s")
    return True


def _report(info: stack.StackInfo, workdir: Path) -> None:
    store = Store(info.store_config(DEMO_BUCKET))
    latest = read_latest(store)
    manifest = read_manifest(store, latest["version"]) if latest else None
    if latest is None or manifest is None:
        _say("no release found in the store: see the log above")
        return
    _say(f"4/4 release {latest['version']} is at {DEMO_BUCKET}/releases/{latest['version']}/")
    for split in SPLITS:
        _say(f"    {split:<5} {manifest['counts'].get(split, 0):>6} images")
    _say(f"    quarantined {manifest['quarantined']}")
    _say(f"""
What to try next:
  eval "$(.venv/bin/cxr stack env --dir {workdir / "stack"})"   # the store's endpoint and keys
  .venv/bin/python -c "import pandas as pd, pyarrow.fs as fs, os; \\
s3 = fs.S3FileSystem(endpoint_override=os.environ['AWS_ENDPOINT_URL']); \\
print(pd.read_parquet('cxr-demo/releases/{latest["version"]}/metadata.parquet', filesystem=s3).head())"
  .venv/bin/cxr ui --dir {workdir}      # the Airflow UI on http://127.0.0.1:8780 (login printed)
  .venv/bin/cxr stack down --dir {workdir / "stack"}   # stop the local S3 endpoint (data is kept)""")


def run_demo(workdir: Path, images: int = 240) -> int:
    """Synthetic mirror → local S3 → the DAG through Airflow → a published release."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = _ensure_source(workdir, images)
    _say(f"2/4 starting the local S3 endpoint (data in {workdir / 'stack'})")
    info = stack.stack_up(workdir / "stack")
    _say(f"    {info.endpoint_url}")
    if not _run_dag(workdir, source, info):
        return 1
    _report(info, workdir)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _demo_source(workdir: Path) -> str:
    found = sorted((workdir / "source").glob("synthetic-*"))
    return str(found[-1].resolve()) if found else os.environ.get("CXR_SOURCE", "")


_JSON_FIELD = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"


def _say_how_to_use(port: int, home: Path, celery: bool) -> None:
    password, api = admin_password(home), f"http://127.0.0.1:{port}"
    _say(f"Airflow UI: {api}  user admin, password {password}")
    if celery:
        _say("    CeleryExecutor: PostgreSQL metadata, Redis broker, worker-N processes (logs in the Airflow home)")
    login = f"""{{"username": "admin", "password": "{password}"}}"""
    _say(f"""    REST API v2 (more in the README's "Operations guide"):
      TOKEN=$(curl -s -X POST {api}/auth/token -H 'Content-Type: application/json' \\
        -d '{login}' | {_JSON_FIELD})
      curl -s -X POST {api}/api/v2/dags/{DAG_ID}/dagRuns -H "Authorization: Bearer $TOKEN" \\
        -H 'Content-Type: application/json' -d '{{"logical_date": null, "conf": {{"dry_run": false}}}}'
Unpause {DAG_ID} first (UI toggle or PATCH /api/v2/dags/{DAG_ID} {{"is_paused": false}}): unpausing also
starts the scheduled run of the latest night. Ctrl-C stops every component.""")


def run_ui(
    workdir: Path,
    port: int = API_PORT,
    celery: CelerySettings | None = None,
    workers: int = 2,
) -> int:
    """Bring up api-server, scheduler and dag-processor (plus Celery workers) against the demo's store until Ctrl-C.

    Scheduled runs read ``$CXR_SOURCE`` (default: the demo's synthetic mirror) and publish to the demo bucket;
    the store's endpoint and keys come from the environment (the local S3 endpoint's ``AWS_*``).
    """
    info = stack.stack_up(workdir / "stack")
    extra = {
        **info.env(),
        "CXR_STORE": DEMO_BUCKET,
        "CXR_SOURCE": os.environ.get("CXR_SOURCE") or _demo_source(workdir),
    }
    home = workdir / ("airflow" if celery is None else "airflow-celery")
    names = tuple(f"worker-{n}" for n in range(1, workers + 1))
    airflow = LocalAirflow(home, port, extra, celery=celery, workers=names)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the components on `kill` too, not only on Ctrl-C
    try:
        airflow.start()
        _say_how_to_use(port, home, celery is not None)
        while not airflow.procs.dead():
            time.sleep(1)
        _say(f"an Airflow process exited: {airflow.procs.dead()}; see {airflow.log_dir}")
        return 1
    except (LocalAirflowError, TimeoutError) as exc:
        _say(f"Airflow did not come up: {exc}; see {airflow.log_dir}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        airflow.stop()
        sys.stdout.flush()
