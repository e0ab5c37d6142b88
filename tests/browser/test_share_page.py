"""In a real browser: a share link made from the task page opens, for a visitor with no
session, a page that follows the task live until it ends, with nowhere else to go."""

from __future__ import annotations

import random

import pytest
from playwright.sync_api import expect

from tests.conftest import fetched_state
from tests.conftest import track
from tests.conftest import wait_for
from webapp.simulators import SIMULATORS

pytestmark = pytest.mark.browser


def test_a_shared_page_follows_the_task_to_its_end(page, chromium, live_site, suite, clock):  # type: ignore[no-untyped-def]
    SIMULATORS["opensearch-ml"].add_demo_task(
        suite.states["opensearch-ml"],
        random.Random(1),
        task_id="t-1",
        queued_seconds=1,
        running_seconds=60,
    )
    clock.advance(2)
    track(live_site.app, "ml-prod", "t-1")
    wait_for(
        lambda: fetched_state(live_site.app, "ml-prod", "t-1") == "RUNNING", what="the first fetch"
    )
    page.goto(f"{live_site.url}/tasks/ml-prod/t-1")
    page.select_option("#share-expires", "1h")
    page.click("#task-sharing button[type=submit]")
    url = page.locator("#share-url").input_value()
    assert url.startswith(f"{live_site.url}/share/")

    visitor = chromium.new_context()  # no cookie of the sharer's
    shared = visitor.new_page()
    problems: list[str] = []
    shared.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    shared.on("pageerror", lambda e: problems.append(str(e)))
    try:
        shared.goto(url)
        expect(shared.locator("h1 .task-id")).to_have_text("t-1")
        expect(shared.locator("#task-status")).to_have_attribute("data-polling", "true")
        assert shared.locator("nav[aria-label=Main]").count() == 0
        assert shared.locator("form").count() == 0

        clock.advance(120)  # the upstream task ends; the refresher sees it, the page follows
        expect(shared.locator("#task-status")).to_have_attribute(
            "data-polling", "false", timeout=20_000
        )
        expect(shared.locator("#task-status .muted").first).to_have_text("final")
        assert shared.url == url
        assert problems == []
    finally:
        visitor.close()
