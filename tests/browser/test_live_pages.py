"""In a real browser: pages follow tasks live without reloading, and stop polling when done."""

from __future__ import annotations

import random
import re
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.conftest import fetched_state
from tests.conftest import track
from tests.conftest import wait_for
from webapp.simulators import SIMULATORS

pytestmark = pytest.mark.browser

ML = SIMULATORS["opensearch-ml"]
MIXPEEK = SIMULATORS["mixpeek"]


def add_ml(state, task_id, **kwargs):
    return ML.add_demo_task(state, random.Random(2), task_id=task_id, **kwargs)


def test_detail_page_follows_the_task_and_stops_polling(page, live_site, suite, clock):
    state = suite.states["opensearch-ml"]
    add_ml(state, "deploy/1", queued_seconds=5, running_seconds=10)
    track(live_site.app, "ml-prod", "deploy/1")
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/status" in r.url else None)

    page.goto(f"{live_site.url}/tasks/ml-prod/{quote('deploy/1', safe='')}")
    page.evaluate("window.notReloaded = true")
    badge = page.locator("#task-status .badge-state")
    expect(badge).to_have_text("queued")
    clock.advance(6)
    expect(badge).to_have_text("running")
    expect(page.locator("#task-history tbody tr")).to_have_count(2)
    clock.advance(10)
    expect(badge).to_have_text("succeeded")
    expect(page.locator("#task-status")).to_have_attribute("data-polling", "false")
    assert page.evaluate("window.notReloaded") is True

    # Once final, no more poll requests: watch for three poll intervals.
    seen = len(polls)
    page.wait_for_timeout(3000)
    assert len(polls) == seen


def test_list_updates_active_rows_with_one_request_per_interval(page, live_site, suite, clock):
    ml = suite.states["opensearch-ml"]
    mixpeek = suite.states["mixpeek"]
    add_ml(ml, "ml-a", queued_seconds=5, running_seconds=100)
    add_ml(ml, "ml-b", queued_seconds=5, running_seconds=100)
    MIXPEEK.add_demo_task(mixpeek, random.Random(4), task_id="mx-a", queued_seconds=5)
    track(live_site.app, "ml-prod", "ml-a", "ml-b")
    track(live_site.app, "mixpeek-prod", "mx-a")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    page.goto(live_site.url + "/")
    page.evaluate("window.notReloaded = true")
    rows = page.locator("#task-rows tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#task-rows tr .badge-state", has_text="queued")).to_have_count(3)
    clock.advance(6)
    expect(page.locator("#task-rows tr .badge-state", has_text="running")).to_have_count(3)
    assert page.evaluate("window.notReloaded") is True
    live = [u for u in requests if "/tasks/live" in u]
    assert live, "the list polls"
    assert not [u for u in requests if "/status" in u], "rows are not polled one by one"


def test_filters_are_in_the_url_and_back_works(page, live_site, suite, clock):
    ml = suite.states["opensearch-ml"]
    add_ml(ml, "will-fail", queued_seconds=1, running_seconds=1, final="failed")
    add_ml(ml, "still-running", queued_seconds=1, running_seconds=1000)
    clock.advance(5)
    track(live_site.app, "ml-prod", "will-fail", "still-running")
    page.goto(live_site.url + "/")
    expect(page.locator("#task-rows tr .badge-state", has_text="failed")).to_have_count(1)
    expect(page.locator("#task-rows tr")).to_have_count(2)

    page.select_option("#f-state", "problems")
    expect(page).to_have_url(re.compile(r"state=problems"))
    expect(page.locator("#task-rows tr")).to_have_count(1)
    expect(page.locator("#task-rows a.task-link").first).to_have_text("will-fail")

    # The pushed URL is a full page on its own (a shared link).
    shared = page.context.new_page()
    shared.goto(page.url)
    expect(shared.locator("h1")).to_have_text("Tasks")
    expect(shared.locator("#task-rows tr")).to_have_count(1)
    shared.close()

    page.go_back()
    expect(page).not_to_have_url(re.compile(r"state=problems"))
    expect(page.locator("#task-rows tr")).to_have_count(2)


def test_pages_work_with_javascript_off(chromium, live_site, suite, clock):
    ml = suite.states["opensearch-ml"]
    add_ml(ml, "plain", queued_seconds=1, running_seconds=1000)
    clock.advance(2)
    track(live_site.app, "ml-prod", "plain")
    wait_for(lambda: fetched_state(live_site.app, "ml-prod", "plain"), what="the first fetch")
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_site.url + "/?state=active")
    expect(page.locator("#task-rows tr .badge-state")).to_have_text("running")
    page.locator("#task-rows a.task-link").first.click()
    expect(page.locator("h1 code")).to_have_text("plain")
    # Polling becomes a refresh link.
    expect(page.locator("#task-status noscript")).to_have_count(1)
    page.goto(live_site.url + "/")
    page.select_option("#f-state", "finished")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"state=finished"))
    expect(page.locator("p.empty")).to_contain_text("No task matches")
    context.close()
