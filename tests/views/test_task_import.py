"""Importing from an upstream search in the web UI: a bounded preview, then a background
import whose progress the page polls (the simulators answer over loopback HTTP)."""

from __future__ import annotations

import random
import threading

import pytest

from tests.conftest import wait_for
from tests.helpers import soup
from webapp.db import store
from webapp.db.models import ImportJob
from webapp.db.models import db
from webapp.domain import SearchPage
from webapp.imports import jobs as import_jobs
from webapp.simulators import SIMULATORS
from webapp.sources.registry import registry

ML = SIMULATORS["opensearch-ml"]
HX = {"HX-Request": "true"}


@pytest.fixture
def client(ml_app):
    return ml_app.test_client()


@pytest.fixture
def form(client) -> dict[str, str]:
    page = soup(client.get("/tasks/import"))
    token = page.select_one("#import-form input[name=csrf_token]")["value"]
    return {"csrf_token": token, "source": "ml-prod", "query": "", "limit": "100"}


def add_jobs(state, count: int) -> None:
    for i in range(count):
        ML.add_demo_task(state, random.Random(i), task_id=f"job-{i}")


def test_the_form_offers_only_sources_that_can_search(client):
    page = soup(client.get("/tasks/import"))
    assert [o["value"] for o in page.select("#import-source option")] == ["ml-prod"]
    assert page.select_one("label[for=import-query]") and page.select_one("label[for=import-limit]")
    preview, start = page.select("#import-form button[type=submit]")
    assert preview["formaction"] == "/tasks/import/preview"  # works without JavaScript too
    assert page.select_one("#import-form")["action"] == "/tasks/import"


def test_preview_shows_the_first_results_and_what_is_tracked(ml_app, client, form, ml_state):
    add_jobs(ml_state, 3)
    client.post(
        "/tasks/track",
        data={"csrf_token": form["csrf_token"], "source": "ml-prod", "task_ids": "job-1"},
    )
    response = client.post("/tasks/import/preview", data=form, headers=HX)
    fragment = soup(response)
    assert fragment.select_one("html") is None
    rows = fragment.select(".import-preview tbody tr")
    assert {r.code.get_text(): r.select("td")[-1].get_text() for r in rows} == {
        "job-0": "no",
        "job-1": "yes",
        "job-2": "no",
    }
    assert "finds 3 tasks" in fragment.select_one(".import-preview p").get_text(" ", strip=True)
    with ml_app.app_context():  # a preview tracks nothing
        assert store.get_task("ml-prod", "job-0") is None


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("fault", "answered with an error: upstream_error (HTTP 500)"),
        ("bad query", "The search cannot be read: is not valid JSON"),
        ("slow", "did not answer within"),
    ],
)
def test_preview_problems_are_shown_plainly(client, form, ml_state, monkeypatch, setup, message):
    if setup == "fault":
        ml_state.set_fault("500")
    if setup == "bad query":
        form = {**form, "query": "{oops"}
    if setup == "slow":
        release = threading.Event()
        provider_class = type(registry(client.application).provider("ml-prod"))
        monkeypatch.setattr(
            provider_class, "search_page", lambda *a: release.wait(5) and SearchPage([])
        )
        monkeypatch.setattr(import_jobs, "PREVIEW_TIMEOUT", 0.05)
    response = client.post("/tasks/import/preview", data=form, headers=HX)
    assert response.status_code == 200
    alert = soup(response).select_one("[role=alert]")
    assert message.replace("is not valid JSON", "") in alert.get_text()
    if setup == "slow":
        release.set()


def test_import_runs_in_the_background_and_the_page_follows_it(ml_app, client, form, ml_state):
    add_jobs(ml_state, 5)
    started = soup(client.post("/tasks/import", data=form, headers=HX))
    widget = started.select_one("#import-job")
    progress_url = widget.get("hx-get")
    with ml_app.app_context():
        job_id = db.session.query(ImportJob.id).scalar()
        wait_for(
            lambda: db.session.get(ImportJob, job_id, populate_existing=True).status == "done",
            what="the import",
        )
    final = client.get(progress_url or f"/tasks/import/{job_id}", headers=HX)
    assert final.status_code == 286  # htmx stops polling
    page = soup(final)
    assert page.select_one("#import-job")["data-polling"] == "false"
    assert page.select_one("progress")["value"] == "5"
    assert "Done: 5 tracked, 0 already tracked." in page.select_one(".import-status").get_text(
        " ", strip=True
    )
    assert page.select_one("#import-announce[hx-swap-oob]")
    with ml_app.app_context():
        assert store.get_task("ml-prod", "job-4").upstream_status is not None


def test_without_javascript_the_import_is_a_page_with_a_refresh_link(
    ml_app, client, form, ml_state
):
    add_jobs(ml_state, 2)
    response = client.post("/tasks/import", data=form)
    assert response.status_code == 303
    url = response.headers["Location"]
    with ml_app.app_context():
        job_id = db.session.query(ImportJob.id).scalar()
        wait_for(
            lambda: db.session.get(ImportJob, job_id, populate_existing=True).status == "done",
            what="the import",
        )
    page = soup(client.get(url))
    assert page.select_one("h1").get_text() == "Import from an upstream search"
    assert page.select_one(".recent-imports a")["href"] == url


def test_an_import_can_be_stopped(ml_app, client, form, ml_state, monkeypatch):
    add_jobs(ml_state, 3)
    gate = threading.Event()
    real = import_jobs._Progress.update

    def slow_update(self, steps):  # hold the import after its first task
        gate.wait(5)
        real(self, steps)

    monkeypatch.setattr(import_jobs._Progress, "update", slow_update)
    monkeypatch.setattr(import_jobs, "PROGRESS_EVERY", 0)
    page = soup(client.post("/tasks/import", data=form, headers=HX))
    stop = page.select_one("#import-job form")
    client.post(stop["action"], data={"csrf_token": form["csrf_token"]}, headers=HX)
    gate.set()
    with ml_app.app_context():
        job_id = db.session.query(ImportJob.id).scalar()
        job = wait_for(
            lambda: (
                (j := db.session.get(ImportJob, job_id, populate_existing=True)).finished_at and j
            ),
            what="the import to stop",
        )
        assert job.status == "cancelled"
    text = soup(client.get(f"/tasks/import/{job_id}")).select_one(".import-status").get_text()
    assert "Stopped on request" in text


def test_an_upstream_failure_part_way_is_reported(ml_app, client, form, ml_state):
    ml_state.set_fault("500")
    client.post("/tasks/import", data=form, headers=HX)
    with ml_app.app_context():
        job_id = db.session.query(ImportJob.id).scalar()
        job = wait_for(
            lambda: (
                (j := db.session.get(ImportJob, job_id, populate_existing=True)).finished_at and j
            ),
            what="the import",
        )
        assert job.status == "failed" and "upstream_error" in job.error
    alert = soup(client.get(f"/tasks/import/{job_id}")).select_one("#import-job [role=alert]")
    assert "The upstream stopped answering" in alert.get_text()


def test_limits_and_unknown_sources_are_refused(client, form):
    for bad in ({"limit": "0"}, {"source": "nope"}):
        response = client.post("/tasks/import", data={**form, **bad}, headers=HX)
        assert soup(response).select_one("[role=alert]")
