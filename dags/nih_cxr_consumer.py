"""
### NIH ChestX-ray14 release consumer (example)

An example of a downstream DAG that reacts to new releases: it is scheduled on the asset alias
`nih_cxr_releases`, through which `nih_cxr_release.publish_release` adds one asset event per *newly
published* release (asset `s3://<bucket>/<prefix>/releases/<version>/manifest.json`, with the
version, counts per split and quarantined count in the event's extra). A run that publishes nothing
new (unchanged inputs, dry run, failure) emits no event, so this DAG does not run.

Copy it as the starting point of a training or evaluation pipeline: read the manifest the event names,
then the release's Parquet or WebDataset files. This example only logs what it received.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import AssetAlias, dag, get_current_context, task

log = logging.getLogger(__name__)

RELEASES = AssetAlias("nih_cxr_releases")


@task(retries=2, retry_delay=dt.timedelta(seconds=30), execution_timeout=dt.timedelta(minutes=5))
def log_release() -> list[str]:
    """
    #### log_release
    Logs, for every release event that triggered this run, the manifest URI, version and counts.
    Returns those lines (they also show in XCom).
    """
    from pipeline.run import summary  # standard library only: no pandas, pyarrow or boto3 for a sentence

    events: Any = get_current_context()["triggering_asset_events"][RELEASES]
    lines = [summary.release_event_text(event.asset.uri, event.extra) for event in events]
    for line in lines:
        log.info("%s", line)
    return lines


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=RELEASES,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=30),
    default_args={"owner": "data-platform", "retries": 2},
    tags=["nih-cxr", "consumer", "example"],
)
def nih_cxr_consumer() -> None:
    log_release()


nih_cxr_consumer()
