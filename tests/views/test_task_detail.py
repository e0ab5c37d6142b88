"""The task detail page: key fields, related tasks, annotations, raw payload, source banners."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from tests.conftest import track
from tests.helpers import csrf
from tests.helpers import soup
from webapp.db import store
from webapp.db.models import Source
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.simulators import SIMULATORS


def fields(page, selector="#task-details > dl.fields"):
    dl = page.select_one(selector)
    return {
        dt.get_text(strip=True): dd for dt, dd in zip(dl.select("dt"), dl.select("dd"), strict=True)
    }


def test_every_providers_key_fields_come_first(app_factory, make_source, suite, clock):
    sources = [make_source(p, name=f"{p}-x", poll_interval=1) for p in SIMULATORS]
    app = app_factory(sources)
    ids = {}
    for provider, module in SIMULATORS.items():
        task = module.add_demo_task(
            suite.states[provider], random.Random(9), queued_seconds=1, running_seconds=1
        )
        ids[provider] = task.task_id
        track(app, f"{provider}-x", task.task_id)
    clock.advance(10)
    from webapp.refresher.engine import Refresher

    refresher = Refresher(app)
    refresher.run_once()
    refresher.close()
    client = app.test_client()
    expected = {
        "opensearch-ml": "Worker nodes",
        "mixpeek": "Inputs",
        "conductor": "Workflow type",
        "nclue": "AUROC",
    }
    for provider, label in expected.items():
        page = soup(client.get(f"/tasks/{provider}-x/{ids[provider]}"))
        assert label in fields(page), f"{provider}: {list(fields(page))}"
    nclue = fields(soup(client.get(f"/tasks/nclue-x/{ids['nclue']}")))
    assert nclue["AUROC"].select_one(".metric").get_text().count(".") == 1
    assert "iB" in nclue["Disk usage"].get_text()


def seed(app, task_id, links=None, state=TaskState.RUNNING, raw=None):
    with app.app_context():
        task, _ = store.track("ml-prod", task_id)
        store.apply_fetch(
            task,
            NormalizedTask(
                task_id, state, "RUNNING", False, raw=raw or {"state": "RUNNING"}, links=links or {}
            ),
            utcnow(),
        )
        db.session.commit()


def test_related_tasks_share_an_upstream_group(ml_app):
    seed(ml_app, "deploy-1", links={"model_id": "m-1"})
    seed(ml_app, "register-1", links={"model_id": "m-1"})
    seed(ml_app, "other", links={"model_id": "m-2"})
    page = soup(ml_app.test_client().get("/tasks/ml-prod/deploy-1"))
    assert [a.get_text() for a in page.select("ul.related a")] == ["register-1"]


def test_labels_and_note_are_saved_and_filterable(ml_app):
    seed(ml_app, "t")
    client = ml_app.test_client()
    token = csrf(client)
    response = client.post(
        "/tasks/ml-prod/t/annotations",
        data={"csrf_token": token, "labels": "Nightly, gpu nightly", "note": "ask Ana"},
        headers={"HX-Request": "true"},
    )
    fragment = soup(response)
    assert fragment.select_one("section#task-annotations") is not None
    assert [a.get_text() for a in fragment.select("ul.labels a")] == ["nightly", "gpu"]
    assert fragment.select_one("p.note").get_text() == "ask Ana"
    page = soup(client.get("/tasks/ml-prod/t"))
    assert page.select_one("#labels")["value"] == "nightly, gpu"
    assert page.select_one("ul.labels a")["href"] == "/?q=label:nightly"


def test_raw_payload_is_capped_on_the_page_and_downloadable_whole(ml_app):
    big = {"state": "RUNNING", "blob": "x" * 150_000}
    seed(ml_app, "big", raw=big)
    client = ml_app.test_client()
    page = soup(client.get("/tasks/ml-prod/big"))
    shown = page.select_one("details.raw pre.json").get_text()
    assert len(shown) == 100_000
    assert "Showing the first 100000" in page.select_one("details.raw").get_text()
    download = client.get(page.select_one("details.raw a[download]")["href"])
    assert download.headers["Content-Disposition"] == 'attachment; filename="ml-prod-big.json"'
    assert json.loads(download.data) == big


def test_degraded_and_unauthorized_sources_show_a_banner(ml_app):
    seed(ml_app, "t")
    client = ml_app.test_client()
    with ml_app.app_context():
        row = db.session.get(Source, "ml-prod")
        row.circuit = "open"
        row.last_error = "upstream_error (HTTP 500): boom"
        db.session.commit()
    banner = soup(client.get("/tasks/ml-prod/t")).select_one("#task-status .banner")
    assert "degraded" in banner.get_text() and "HTTP 500" in banner.get_text()
    with ml_app.app_context():
        db.session.get(Source, "ml-prod").circuit = "unauthorized"
        db.session.commit()
    banner = soup(client.get("/tasks/ml-prod/t")).select_one("#task-status .banner")
    assert "refuses our credentials" in banner.get_text()


def test_tasks_of_a_source_that_left_the_config_stay_readable(app_factory, ml_source):
    app = app_factory([ml_source])
    seed(app, "kept")
    later = app_factory([])
    response = later.test_client().get("/tasks/ml-prod/kept")
    assert response.status_code == 200
    assert "no longer configured" in soup(response).select_one("#task-status .banner").get_text()


def test_timeline_lists_time_in_each_state(ml_app):
    seed(ml_app, "t")
    with ml_app.app_context():
        task = store.get_task("ml-prod", "t")
        later = utcnow() + timedelta(seconds=90)
        store.apply_fetch(
            task, NormalizedTask("t", TaskState.SUCCEEDED, "COMPLETED", True, raw={}), later
        )
        db.session.commit()
    page = soup(ml_app.test_client().get("/tasks/ml-prod/t"))
    cells = [row.select("td")[-1].get_text() for row in page.select("#task-history tbody tr")]
    assert cells[0] in ("1 min", "90 s") and cells[-1] == "final"
    assert len(page.select(".timeline-bar .segment")) == 2


def test_conductor_logs_are_fetched_on_change_and_shown(app_factory, make_source, suite, clock):
    from webapp.refresher.engine import Refresher

    app = app_factory([make_source("conductor", name="orkes", poll_interval=1)])
    state = suite.states["conductor"]
    task = SIMULATORS["conductor"].add_demo_task(
        state, random.Random(3), queued_seconds=1, running_seconds=10
    )
    track(app, "orkes", task.task_id)
    refresher = Refresher(app)
    clock.advance(2)
    refresher.run_once()
    # While it runs, polling costs one call: the log is read once the task has finished.
    assert state.calls.get("log", 0) == 0
    clock.advance(20)
    for _ in range(2):  # the final fetch, then the confirming one: the log is read once
        with app.app_context():
            store.get_task("orkes", task.task_id).next_poll_at = utcnow()
            db.session.commit()
        refresher.run_once()
    refresher.close()
    assert state.calls.get("log", 0) == 1
    page = soup(app.test_client().get(f"/tasks/orkes/{task.task_id}"))
    entries = [li.select_one("code").get_text() for li in page.select("ol.task-log li")]
    assert entries and len(entries) >= 2
    assert "Logs" not in fields(page)


def test_the_page_says_how_tracking_began(ml_app):
    with ml_app.app_context():
        store.track("ml-prod", "by-hand")
        store.track("ml-prod", "pushed", via="push")
        db.session.commit()
    client = ml_app.test_client()

    def tracked_since(task_id: str) -> str:
        page = soup(client.get(f"/tasks/ml-prod/{task_id}"))
        term = page.find("dt", string="Tracked since")
        return " ".join(term.find_next_sibling("dd").get_text().split())

    assert tracked_since("by-hand").endswith("(by hand)")
    assert tracked_since("pushed").endswith("(pushed through the API)")
