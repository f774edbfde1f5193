"""The UI flow in a real browser: Playwright drives Debian's Chromium against a real Airflow.

Log in, open the DAG, read its docs, open the trigger form with the parameters, fill it, trigger,
and watch the run succeed. Screenshots go to ``test-artifacts/`` (git-ignored; CI keeps them).
Chromium comes from ``apt-get install chromium`` (``.ci/run`` installs it); Playwright's own browser
download is not used.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.airflow.installation import LocalAirflow
from pipeline.dev.airflow.settings import admin_password
from pipeline.dev.ports import free_api_port
from pipeline.dev.stack import StackInfo
from pipeline.dev.waiting import wait_until
from tests.integration.airflow_helpers import new_bucket, synthetic_mirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "nih_cxr_release"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
PARAM_LABELS = [
    "Source",
    "Store",
    "Release version",
    "Split mode",
    "Split seed",
    "Archives",
    "Variant size",
    "Dry run",
    "Force",
    "Store connection",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_mirror(tmp_path_factory, "ui-mirror", images=40, seed=31)


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    return new_bucket(s3_client, "ui")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, s3_stack: StackInfo, bucket: str) -> Iterator[LocalAirflow]:
    extra = {**s3_stack.env(), "CXR_SOURCE": "", "CXR_STORE": f"s3://{bucket}/nightly"}
    with LocalAirflow(tmp_path_factory.mktemp("airflow-ui"), free_api_port(), extra) as running:
        running.client().wait_for_dag(DAG)
        yield running


@pytest.fixture(scope="module")
def page(airflow: LocalAirflow) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (.ci/run does it)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(30_000)
        yield tab
        browser.close()


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_login_with_the_local_admin(page: Any, airflow: LocalAirflow) -> None:
    page.goto(airflow.base_url + "/")
    page.wait_for_url("**/auth/login**")  # the UI sends an anonymous visitor to the login form
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", admin_password(airflow.home))
    page.click("button[type=submit]")
    page.wait_for_url(airflow.base_url + "/")
    assert page.get_by_role("link", name="Dags").is_visible()


def test_dag_page_shows_its_docs(page: Any, airflow: LocalAirflow) -> None:
    page.goto(f"{airflow.base_url}/dags/{DAG}")
    page.get_by_role("button", name="Dag Docs").click()
    docs = page.get_by_role("dialog")
    for text in ("NIH ChestX-ray14 release", "Unchanged inputs publish nothing new", "Backfill", "dry_run"):
        assert docs.get_by_text(text).first.is_visible(), text
    shot(page, "1-docs")
    page.keyboard.press("Escape")
    docs.wait_for(state="hidden")


def test_trigger_form_shows_every_parameter(page: Any, airflow: LocalAirflow) -> None:
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    form.get_by_text("Run Parameters").wait_for()
    labels = {text.replace("*", "").strip() for text in form.locator("label").all_inner_texts()}
    assert set(PARAM_LABELS) <= labels, f"missing from the form: {set(PARAM_LABELS) - labels}"
    assert form.locator("[name=element_shards]").get_attribute("placeholder") == "Enter each string on a new line"


def test_trigger_from_the_form_and_see_the_run_succeed(
    page: Any, airflow: LocalAirflow, source: Path, bucket: str, s3_client: Any
) -> None:
    form = page.get_by_role("dialog")
    form.get_by_role("checkbox", name=f"Unpause {DAG} on trigger").check()
    form.locator("[name=element_source]").fill(str(source))
    form.locator("[name=element_store]").fill(f"s3://{bucket}/ui")
    form.locator("[name=element_shards]").fill("1\n2\n3\n4")
    shot(page, "2-trigger-form")
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url(f"**/dags/{DAG}/runs/manual__*")
    run_id = page.url.rstrip("/").rsplit("/runs/", 1)[1]

    state = ""
    deadline = time.monotonic() + 300
    while state not in ("Success", "Failed") and time.monotonic() < deadline:
        page.goto(f"{airflow.base_url}/dags/{DAG}/runs")
        row = page.get_by_role("row").filter(has_text=run_id)
        text = row.inner_text() if row.count() else ""
        state = next((s for s in ("Success", "Failed", "Running", "Queued") if s in text), "")
        if state not in ("Success", "Failed"):
            page.wait_for_timeout(4000)
    page.goto(f"{airflow.base_url}/dags/{DAG}/runs/{run_id}")
    page.get_by_role("heading", name=run_id).wait_for()
    page.wait_for_timeout(1500)
    shot(page, "3-run-success" if state == "Success" else "3-run-" + (state or "timeout").lower())
    assert state == "Success", f"the run shows {state or 'no state'} in the UI; see {ARTIFACTS}"
    latest = json.loads(s3_client.get_object(Bucket=bucket, Key="ui/releases/latest.json")["Body"].read())
    assert latest["version"] == run_id.removeprefix("manual__")[:10].replace("-", ".")


def test_approve_a_staged_release_on_its_review_page(
    page: Any, airflow: LocalAirflow, source: Path, bucket: str, s3_client: Any
) -> None:
    api = airflow.client()
    conf = {"source": str(source), "store": f"s3://{bucket}/reviewed", "release": "ui-reviewed", "review": True}
    run_id = api.trigger(DAG, conf)

    def awaiting() -> bool | None:
        states = {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG, run_id)}
        return True if states.get("review_release") == "awaiting_input" else None

    wait_until(awaiting, 300, f"the review task of run {run_id} to wait for input")
    assert not s3_client.list_objects_v2(Bucket=bucket, Prefix="reviewed/releases/ui-reviewed/manifest.json").get(
        "Contents"
    ), "nothing is published while the review waits"
    page.goto(f"{airflow.base_url}/dags/{DAG}/runs/{run_id}/tasks/review_release/required_actions")
    page.get_by_text("Publish release ui-reviewed?").first.wait_for()
    page.get_by_text("is staged by run").first.wait_for()
    page.locator("[name=element_reason]").fill("checked in the browser")
    shot(page, "4-review-page")
    page.get_by_role("button", name="Approve").click()
    assert api.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"
    body = s3_client.get_object(Bucket=bucket, Key="reviewed/releases/ui-reviewed/manifest.json")["Body"].read()
    review = json.loads(body)["provenance"]["review"]
    assert (review["decision"], review["by"], review["comment"]) == ("approved", "admin", "checked in the browser")
