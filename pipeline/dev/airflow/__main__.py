"""``python -m pipeline.dev.airflow`` (``make scheduler`` / ``make celery``): the local Airflow against the demo store.

LocalExecutor on SQLite, or ``--executor celery``: CeleryExecutor on this machine's PostgreSQL and Redis
(:func:`~pipeline.dev.airflow.settings.local_celery_settings`) with ``--workers`` worker processes. Runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.dev.airflow.settings import API_PORT, local_celery_settings

PROG = "python -m pipeline.dev.airflow"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(prog=PROG, description=main.__doc__)
    parser.add_argument("--dir", default=".cxr", help="workspace (Airflow home in DIR/airflow, S3 data in DIR/stack)")
    parser.add_argument("--port", type=int, default=API_PORT, help="API server port (the log server takes PORT+1)")
    parser.add_argument("--executor", choices=["local", "celery"], default="local")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (with --executor celery)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Local Airflow (LocalExecutor, or CeleryExecutor with worker processes) against the demo's store."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pipeline.dev import demo  # the demo's store and mirror; demo never imports this module

    celery = local_celery_settings() if args.executor == "celery" else None
    return demo.run_ui(Path(args.dir), port=args.port, celery=celery, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
