"""In a real browser: the detail page's actions work in place, and boosted navigation."""

from __future__ import annotations

import random

import pytest
from playwright.sync_api import expect

from tests.conftest import fetched_state
from tests.conftest import track
from tests.conftest import wait_for
from webapp.simulators import SIMULATORS

pytestmark = pytest.mark.browser


@pytest.fixture
def running_task(live_site, suite, clock):  # type: ignore[no-untyped-def]
    SIMULATORS["opensearch-ml"].add_demo_task(
        suite.states["opensearch-ml"],
        random.Random(1),
        task_id="t-1",
        queued_seconds=1,
        running_seconds=999,
    )
    clock.advance(2)
    track(live_site.app, "ml-prod", "t-1")
    wait_for(
        lambda: fetched_state(live_site.app, "ml-prod", "t-1") == "RUNNING", what="the first fetch"
    )
    return f"{live_site.url}/tasks/ml-prod/t-1"


def test_labels_and_note_save_in_place(page, running_task):
    page.goto(running_task)
    page.evaluate("window.notReloaded = true")
    page.fill("#labels", "nightly, gpu")
    page.fill("#note", "restarted by Ana")
    page.click("#task-annotations button[type=submit]")
    expect(page.locator("#task-annotations ul.labels a")).to_have_text(["nightly", "gpu"])
    expect(page.locator("#task-annotations p.note")).to_have_text("restarted by Ana")
    assert page.evaluate("window.notReloaded") is True
    page.reload()
    expect(page.locator("#labels")).to_have_value("nightly, gpu")


def test_refresh_now_queues_a_fetch_in_place(page, running_task):
    page.goto(running_task)
    page.click("#refresh-form button")
    expect(page.locator("#refresh-form button")).to_have_text("Refresh queued")
    expect(page.locator("#refresh-form button")).to_be_disabled()


def test_time_display_menu_switches_to_relative(page, running_task):
    page.goto(running_task)
    page.select_option("#time-mode", "relative")
    expect(page.locator("#time-mode")).to_have_value("relative")
    expect(page.locator("#task-details time").first).to_contain_text("ago")
    expect(page).to_have_url(running_task)


def test_boosted_navigation_from_the_list_to_a_task_and_back(page, live_site, running_task):
    page.goto(live_site.url + "/")
    page.evaluate("window.notReloaded = true")
    page.locator("#task-rows a.task-link", has_text="t-1").click()
    expect(page).to_have_url(running_task)
    expect(page.locator("h1 code")).to_have_text("t-1")
    page.go_back()
    expect(page.locator("h1")).to_have_text("Tasks")
    assert page.evaluate("window.notReloaded") is True


def test_unknown_task_shows_the_404_page(page, live_site):
    response = page.goto(live_site.url + "/tasks/ml-prod/nope")
    assert response.status == 404
    expect(page.locator("main")).to_contain_text("is not tracked")
    expect(page.locator("main a", has_text="task list")).to_be_visible()
