"""Track, refresh and watch a task end to end: real SQLite, real HTTP to the simulator."""

from __future__ import annotations

import random

import pytest
from bs4 import BeautifulSoup

from tests.conftest import track
from webapp.db import store
from webapp.simulators import SIMULATORS
from webapp.simulators.core import Fault

ML = SIMULATORS["opensearch-ml"]


def add(ml_state, task_id, **kwargs):
    return ML.add_demo_task(ml_state, random.Random(3), task_id=task_id, **kwargs)


def status_of(client, task_id, version=None):
    from urllib.parse import quote

    url = f"/tasks/ml-prod/{quote(task_id, safe='')}/status"
    if version is not None:
        url += f"?v={version}"
    return client.get(url, headers={"HX-Request": "true"})


def test_track_refresh_and_watch_until_terminal(ml_app, ml_state, clock, driver):
    add(ml_state, "task-1", queued_seconds=5, running_seconds=10)
    track(ml_app, "ml-prod", "task-1")
    client = ml_app.test_client()

    # Before the first fetch the page says so and polls.
    page = BeautifulSoup(client.get("/tasks/ml-prod/task-1").text, "html.parser")
    assert "waiting for the first fetch" in page.select_one("#task-status").get_text()
    assert page.select_one("#task-status")["hx-trigger"].startswith("every ")

    driver.pass_()
    answer = status_of(client, "task-1")
    assert answer.status_code == 200
    fragment = BeautifulSoup(answer.text, "html.parser")
    assert fragment.select_one("#task-status .badge-state").get_text() == "queued"
    assert fragment.select_one("#task-status .upstream-word").get_text() == "CREATED"
    assert fragment.select_one("#task-status")["hx-trigger"]

    # Nothing changed since the version the page holds: 204, nothing to swap.
    with ml_app.app_context():
        version = store.get_task("ml-prod", "task-1").version
    assert status_of(client, "task-1", version).status_code == 204

    clock.advance(6)
    driver.pass_()
    fragment = BeautifulSoup(status_of(client, "task-1", version).text, "html.parser")
    assert fragment.select_one("#task-status .badge-state").get_text() == "running"
    # The history comes along out of band.
    history = fragment.select_one("#task-history")
    assert history["hx-swap-oob"] == "true"
    assert [c.get_text() for c in history.select("tbody code")] == ["CREATED", "RUNNING"]

    clock.advance(20)
    driver.pass_()
    final = status_of(client, "task-1", version)
    assert final.status_code == 286
    widget = BeautifulSoup(final.text, "html.parser").select_one("#task-status")
    assert widget.select_one(".badge-state").get_text() == "succeeded"
    assert not widget.has_attr("hx-trigger") and not widget.has_attr("hx-get")

    # The list shows the final state; the JSON has the full history, oldest first.
    listing = BeautifulSoup(client.get("/").text, "html.parser")
    row = listing.select_one("#task-rows tr")
    assert row.select_one(".badge-state").get_text() == "succeeded"
    data = client.get("/api/v1/tasks/ml-prod/task-1").get_json()
    assert [h["upstream_status"] for h in data["history"]] == ["CREATED", "RUNNING", "COMPLETED"]
    assert data["terminal"] is True and data["links"]["model_id"]


def test_terminal_task_gets_one_confirming_fetch_then_none(ml_app, ml_state, clock, driver):
    add(ml_state, "done", queued_seconds=1, running_seconds=1)
    clock.advance(10)
    track(ml_app, "ml-prod", "done")
    assert driver.pass_().fetched == 1
    assert driver.pass_().fetched == 1  # the confirming fetch after the grace period
    assert driver.pass_().fetched == 0
    assert ml_state.calls["get"] == 2


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.SERVER_ERROR, "upstream_error"),
        (Fault.UNAUTHORIZED, "unauthorized"),
        (Fault.RATE_LIMITED, "rate_limited"),
        (Fault.MALFORMED, "bad_payload"),
    ],
)
def test_upstream_faults_keep_the_last_good_state(ml_app, ml_state, clock, driver, fault, kind):
    add(ml_state, "flaky", queued_seconds=5, running_seconds=100)
    track(ml_app, "ml-prod", "flaky")
    driver.pass_()
    clock.advance(6)
    driver.pass_()
    ml_state.set_fault(fault, task_id="flaky")
    driver.pass_()
    client = ml_app.test_client()
    with ml_app.app_context():
        task = store.get_task("ml-prod", "flaky")
        assert task.state == "running" and task.fetch_error_kind == kind
        assert [e.upstream_status for e in task.events] == ["CREATED", "RUNNING"]
    page = BeautifulSoup(client.get("/tasks/ml-prod/flaky").text, "html.parser")
    assert "Fetch error" in page.select_one("#task-status .fetch-error").get_text()
    assert page.select_one("#task-status .badge-state").get_text() == "running"
    row = BeautifulSoup(client.get("/").text, "html.parser").select_one("#task-rows tr")
    assert f"fetch error: {kind}" in row.get_text()
    # Once the upstream recovers the error clears and the task carries on.
    ml_state.clear_faults()
    driver.pass_()
    with ml_app.app_context():
        task = store.get_task("ml-prod", "flaky")
        assert task.fetch_error is None and task.state == "running"


def test_task_deleted_upstream_is_kept_as_gone(ml_app, ml_state, clock, driver):
    add(ml_state, "short-lived")
    track(ml_app, "ml-prod", "short-lived")
    driver.pass_()
    ml_state.tasks["short-lived"].gone = True
    driver.pass_()
    client = ml_app.test_client()
    data = client.get("/api/v1/tasks/ml-prod/short-lived").get_json()
    assert data["gone_upstream"] is True
    assert data["state"] == "queued" and data["fetch_error"].startswith("not_found")
    page = BeautifulSoup(client.get("/tasks/ml-prod/short-lived").text, "html.parser")
    assert "Gone upstream" in page.select_one("#task-status").get_text()


@pytest.mark.parametrize(
    "task_id", ["with/slash", "what?now", "100%", "has space", "a/status", "ü%2F"]
)
def test_awkward_ids_round_trip_through_every_url(ml_app, ml_state, driver, task_id):
    from urllib.parse import quote

    add(ml_state, task_id)
    track(ml_app, "ml-prod", task_id)
    driver.pass_()
    client = ml_app.test_client()
    listing = BeautifulSoup(client.get("/").text, "html.parser")
    href = listing.select_one("#task-rows a.task-link")["href"]
    assert href == f"/tasks/ml-prod/{quote(task_id, safe='')}"
    page = client.get(href)
    assert page.status_code == 200
    assert BeautifulSoup(page.text, "html.parser").select_one("h1 code").get_text() == task_id
    assert client.get(href + "/status").status_code == 200
    data = client.get("/api/v1" + href).get_json()
    assert data["task_id"] == task_id and data["state"] == "queued"


@pytest.mark.parametrize(
    "payload",
    [{"unexpected": True}, {"state": ["RUNNING"]}, {"state": "RUNNING", "create_time": "x" * 50}],
)
def test_odd_payloads_are_stored_raw_and_pages_render(ml_app, ml_state, driver, payload):
    ml_state.add_fixed("odd", payload, "state")
    track(ml_app, "ml-prod", "odd")
    driver.pass_()
    client = ml_app.test_client()
    data = client.get("/api/v1/tasks/ml-prod/odd").get_json()
    assert data["raw"] == payload
    if isinstance(payload.get("state"), str):
        assert data["fetch_error"] is None and data["state"] == "running"
    else:
        assert data["fetch_error_kind"] == "bad_payload"
        assert data["state"] == "unknown"
    page = client.get("/tasks/ml-prod/odd")
    assert page.status_code == 200
    assert BeautifulSoup(page.text, "html.parser").select_one("details.raw pre.json") is not None
    assert client.get("/").status_code == 200
