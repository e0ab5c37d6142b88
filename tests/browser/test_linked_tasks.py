"""In Chromium: a task's links, tracked with the button (htmx), and its family timeline, under
the Content-Security-Policy, wide and narrow."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.test_csp import RECORD_VIOLATIONS
from tests.browser.test_csp import violations
from tests.conftest import track
from tests.helpers import wait_for
from webapp.db.models import TaskLink
from webapp.db.models import db
from webapp.refresher.background import BackgroundRefresher
from webapp.simulators import SIMULATORS
from webapp.simulators.server import ServerThread

pytestmark = pytest.mark.browser


def link_found(app) -> bool:  # type: ignore[no-untyped-def]
    with app.app_context():
        return bool(db.session.scalar(sa.select(TaskLink.id).where(TaskLink.status == "found")))


def test_track_a_link_and_read_the_family_timeline(page, app_factory, make_source, suite, clock):
    ml = SIMULATORS["opensearch-ml"].add_demo_task(
        suite.states["opensearch-ml"], random.Random(5), queued_seconds=1, running_seconds=600
    )
    suite.states["conductor"].add(
        "launcher-1",
        [("SCHEDULED", 1.0), ("COMPLETED", None)],
        fields={
            "taskType": "HTTP",
            "workflowInstanceId": "wf-browser",
            "outputData": {"response": {"statusCode": 200, "body": {"task_id": ml.task_id}}},
        },
    )
    clock.advance(5)
    app = app_factory(
        [
            make_source("conductor", name="cd", poll_interval=0.3),
            make_source("opensearch-ml", name="ml", poll_interval=0.3),
        ],
        UI_POLL_SECONDS=1,
        REFRESH_TICK=0.1,
    )
    track(app, "cd", "launcher-1")
    background = BackgroundRefresher(app)
    background.start()
    server = ServerThread(app).start()
    page.add_init_script(RECORD_VIOLATIONS)
    try:
        wait_for(lambda: link_found(app), timeout=20, what="the refresher's link pass")
        page.goto(f"{server.url}/tasks/cd/launcher-1")
        button = page.locator(f"button[data-track-link='{ml.task_id}']")
        button.click()  # htmx swaps the links block in place, the button gone
        expect(button).to_have_count(0)
        expect(page.locator("#task-family tr.task-link a")).to_have_text(ml.task_id)
        rows = page.locator("#task-family table.family-gantt tbody tr")
        expect(rows).to_have_count(2)
        bars = page.locator("#task-family svg.gantt-bar rect")
        assert all(bars.nth(i).bounding_box()["width"] > 0 for i in range(2))
        assert violations(page) == []

        # Narrow: each task a block, its bar across the whole width, nothing off screen.
        page.set_viewport_size({"width": 360, "height": 800})
        row = rows.nth(1).bounding_box()
        bar = page.locator("#task-family svg.gantt-bar").nth(1).bounding_box()
        assert bar["width"] > 0.8 * row["width"]
        # The block fits the window (nothing of it reaches past the right edge).
        sticking_out = page.evaluate(
            "[...document.querySelectorAll('#task-family, #task-family *')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
            ".map(e => e.tagName)"
        )
        assert sticking_out == []
    finally:
        server.stop()
        background.stop()
