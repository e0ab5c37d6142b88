"""`taskdeck demo`: simulators and dashboard on one port; every provider's tasks are fetched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from bs4 import BeautifulSoup
from flask import Flask

from tests.helpers import soup
from webapp.db.models import Follow
from webapp.db.models import Task
from webapp.db.models import TaskLink
from webapp.db.models import db
from webapp.demo import TaskSpawner
from webapp.demo import add_random_task
from webapp.demo import build_demo
from webapp.demo import demo_source_name
from webapp.demo import demo_source_names
from webapp.demo_sink import sink_app
from webapp.links.linking import LinkPass
from webapp.refresher.engine import Refresher
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.server import ServerThread
from webapp.web.headers import CONTENT_SECURITY_POLICY


class Deferred:
    """A WSGI app set after the server is bound (the demo needs its port to build sources)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@contextmanager
def running_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ServerThread, Flask, SimulatorSuite, Refresher]]:
    """The demo served on a loopback port, with a refresher the test drives itself."""
    monkeypatch.setenv("TASKDECK_INSTANCE_PATH", str(tmp_path))
    deferred = Deferred()
    with ServerThread(deferred) as server:
        app, suite, wsgi = build_demo("127.0.0.1", server.port, instance_path=str(tmp_path))
        app.config["REFRESHER"] = False
        deferred.app = wsgi
        refresher = Refresher(app)
        try:
            yield server, app, suite, refresher
        finally:
            refresher.close()


def test_demo_serves_all_four_providers_on_one_port(tmp_path, monkeypatch):
    with running_demo(tmp_path, monkeypatch) as (server, app, _suite, refresher):
        report = refresher.run_once()
        assert report.failed == 0 and report.fetched > 30
        with app.test_client() as client:
            data = client.get("/api/v1/tasks?limit=500").get_json()
        by_source: dict[str, list[dict[str, Any]]] = {}
        for task in data["tasks"]:
            by_source.setdefault(task["source"], []).append(task)
        assert set(by_source) == set(demo_source_names().values())
        for source, tasks in by_source.items():
            assert all(t["last_fetched_at"] and not t["fetch_error"] for t in tasks), source
            assert any(not t["terminal"] for t in tasks), f"{source} has live tasks"
            # Every demo source shows an upstream action on some task, and cancel is on offer.
            assert any(t["actions"] for t in tasks), f"{source} offers an action"
        assert any("cancel" in t["actions"] for t in data["tasks"])
        # ...and its page offers it as a button, with nothing to set up (no sign-in).
        live = next(t for t in data["tasks"] if "cancel" in t["actions"])
        path = f"/tasks/{live['source']}/{quote(live['task_id'], safe='')}"
        task_page = httpx.get(server.url + path, timeout=10)
        button = BeautifulSoup(task_page.text, "html.parser").select_one(
            "#task-upstream-actions button[data-action=cancel]"
        )
        assert button is not None and button.get_text() == "Cancel upstream"
        # The dashboard itself answers on the same port as the upstreams.
        page = httpx.get(server.url + "/", timeout=10)
        assert page.status_code == 200  # no sign-in: the demo turns it off, and says so
        board = BeautifulSoup(page.text, "html.parser")
        assert "Sign-in is off" in board.select_one("#sign-in-off").get_text()
        rows = board.select("#task-rows tr")
        assert len(rows) >= 30


def test_the_demo_shows_an_alert_delivery_without_set_up(tmp_path, monkeypatch):
    """The demo's rule (``state:problems``) posts to the demo's own sink page."""
    with running_demo(tmp_path, monkeypatch) as (server, app, _suite, refresher):
        refresher.run_once()
        sent = refresher.deliveries.send_all_due()
        assert sent > 0
        log = BeautifulSoup(
            httpx.get(server.url + "/notifications", timeout=10).text, "html.parser"
        )
        assert "demo: problems" in log.select_one("#rules").get_text()
        assert log.select("tr.delivery.status-sent")
        sink = BeautifulSoup(httpx.get(server.url + "/demo/sink/", timeout=10).text, "html.parser")
        messages = sink.select(".sink-message")
        assert len(messages) == sent
        link = messages[0].select_one("a")["href"]
        assert link.startswith(server.url + "/tasks/")
        assert httpx.get(link, timeout=10).status_code == 200


def test_the_sink_page_is_under_the_csp_and_links_only_http_urls():
    """Anyone may post to the demo's sink: what they post is shown as text."""
    client = sink_app().test_client()
    hostile = {"url": "javascript:alert(1)", "task": {"name": "<script>alert(1)</script>"}}
    assert client.post("/hook", json=hostile).status_code == 200
    assert client.post("/hook", json={"url": "http://127.0.0.1:8000/tasks/a/b"}).status_code == 200
    page = client.get("/")
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    sink = BeautifulSoup(page.text, "html.parser")
    assert [a["href"] for a in sink.select("a[href^=http], a[href^=javascript]")] == [
        "http://127.0.0.1:8000/tasks/a/b"
    ]
    assert not sink.select("script")
    assert "<script>alert(1)</script>" in sink.get_text()


def test_a_task_started_upstream_shows_up_in_the_demo_through_its_follow(tmp_path, monkeypatch):
    """Nobody tracks the spawner's tasks: each demo source's follow finds them."""
    with running_demo(tmp_path, monkeypatch) as (_server, app, suite, refresher):
        first = refresher.follows.run_due()
        assert sorted(run.source for run in first) == sorted(demo_source_names().values())
        assert all(run.error is None for run in first)
        spawner = TaskSpawner(app, suite, every=0.01, seed=5)
        started = [add_random_task(suite, provider, spawner.rng) for provider in SIMULATORS]
        with app.app_context():
            # Due again at once, as the interval would make them.
            db.session.execute(sa.update(Follow).values(next_run_at=None))
            db.session.commit()
        later = refresher.follows.run_due()
        assert sum(run.found for run in later) == len(SIMULATORS)
        with app.test_client() as client:
            data = client.get("/api/v1/tasks?limit=500").get_json()
        shown = {task["task_id"] for task in data["tasks"]}
        assert set(started) <= shown
        with app.app_context():
            via = db.session.scalars(
                sa.select(Task.tracked_via).where(Task.task_id.in_(started))
            ).all()
        assert via == ["follow"] * len(SIMULATORS)


def test_a_demo_workflow_launches_an_ml_task_that_shows_up_linked(tmp_path, monkeypatch):
    with running_demo(tmp_path, monkeypatch) as (server, app, _suite, refresher):
        refresher.run_once()
        links = LinkPass(app, refresher.clock, refresher.claims.writing)
        # Passes as a running refresher makes them, each within its request budget.
        for _ in range(20):
            if not links.run().requests:
                break
        refresher.run_once()
        ml_source = demo_source_name("opensearch-ml")
        with app.app_context():
            launched = db.session.execute(
                sa.select(TaskLink, Task)
                .join(Task, Task.id == TaskLink.task_pk)
                .where(TaskLink.relation == "launched", TaskLink.status == "found")
            ).all()
            assert len(launched) == 1
            link, launcher = launched[0]
            assert link.target_source == ml_source
            ml_task = db.session.scalar(
                sa.select(Task).where(Task.source == ml_source, Task.task_id == link.target_task_id)
            )
            assert ml_task is not None and ml_task.tracked_via == "link"
            assert ml_task.last_fetched_at is not None
            page_url = f"/tasks/{launcher.source}/{launcher.task_id}"
        page = soup(httpx.get(server.url + page_url, timeout=10))
        row = page.select_one("#task-family tr.task-link")
        assert link.target_task_id in row.get_text()
        assert row.select_one("a")["href"].startswith(f"/tasks/{ml_source}/")
        assert len(page.select("#task-family table.family-gantt tbody tr")) == 2
