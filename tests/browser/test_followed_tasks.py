"""In a real browser: a task that a follow tracks appears in an open list without a reload, and
a follow's runs show on the sources page as they happen."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from flask import Flask
from playwright.sync_api import expect

from tests.conftest import fetched_state
from tests.conftest import track
from tests.conftest import wait_for
from webapp.db import store
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.follows import manage
from webapp.simulators import SIMULATORS

pytestmark = pytest.mark.browser

ML = SIMULATORS["opensearch-ml"]
MIXPEEK = SIMULATORS["mixpeek"]


def track_as_a_follow_run_would(app: Flask, source: str, task_id: str) -> None:
    """THE ARRIVAL, by a real follow run: the source follows every task ("*" matches all on
    these simulators), and is run now; returns once the run has tracked ``task_id``."""
    with app.app_context():
        follow = manage.follow_for(source)
        if follow is None:
            manage.add(source, manage.read_settings(source, "*", "3600", None), actor=None)
            db.session.commit()
        else:
            manage.run_now(follow, app)

    def tracked() -> bool:
        with app.app_context():
            task = store.get_task(source, task_id)
            return task is not None and task.tracked_via == "follow"

    wait_for(tracked, what=f"the follow run tracking {task_id}")


def test_a_followed_task_appears_in_the_open_list(page, live_site, suite, clock):
    ml, mixpeek = suite.states["opensearch-ml"], suite.states["mixpeek"]
    ML.add_demo_task(ml, random.Random(1), task_id="older", queued_seconds=1, running_seconds=1)
    clock.advance(5)
    track(live_site.app, "ml-prod", "older")
    wait_for(lambda: fetched_state(live_site.app, "ml-prod", "older"), what="the first fetch")

    page.goto(live_site.url + "/?source=ml-prod")
    page.evaluate("window.notReloaded = true")
    rows = page.locator("#task-rows tr")
    expect(rows).to_have_count(1)
    total = page.locator("#summary .summary-total strong")
    expect(total).to_have_text("1")

    ML.add_demo_task(ml, random.Random(2), task_id="followed", queued_seconds=5)
    MIXPEEK.add_demo_task(mixpeek, random.Random(3), task_id="other-source", queued_seconds=5)
    track_as_a_follow_run_would(live_site.app, "ml-prod", "followed")
    track_as_a_follow_run_would(live_site.app, "mixpeek-prod", "other-source")

    expect(rows).to_have_count(2)
    expect(rows.first.locator("a.task-link")).to_have_text("followed")  # on top
    expect(total).to_have_text("2")
    # It is followed live like any active row: the upstream moves on, so does the row.
    clock.advance(10)
    expect(rows.first.locator(".badge-state")).to_have_text("running")
    expect(page.locator("a.task-link", has_text="other-source")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True


def test_an_empty_list_fills_itself(page, live_site, suite):
    ML.add_demo_task(suite.states["opensearch-ml"], random.Random(4), task_id="first")
    page.goto(live_site.url + "/?source=ml-prod")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("p.empty")).to_be_visible()
    track_as_a_follow_run_would(live_site.app, "ml-prod", "first")
    expect(page.locator("#task-rows a.task-link")).to_have_text(["first"])
    expect(page.locator("p.empty")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True


def a_run_under_way_elsewhere(app: Flask, source: str) -> None:
    """A follow whose run another process holds (its lease): this process's runner leaves it."""
    with app.app_context():
        follow = manage.add(source, manage.read_settings(source, "*", "120", "2"), actor=None)
        follow.lease_owner, follow.lease_until = "another-worker", utcnow() + timedelta(minutes=5)
        db.session.commit()


def finish_the_run_elsewhere(app: Flask, source: str, found: int) -> None:
    """What that other process writes when its run ends (as webapp/follows/runner.py does)."""
    with app.app_context():
        follow = manage.follow_for(source)
        assert follow is not None
        now = utcnow()
        follow.runs += 1
        follow.last_started_at = follow.last_finished_at = follow.last_success_at = now
        follow.last_found, follow.total_found = found, follow.total_found + found
        follow.last_note = f"tracked the newest {found} of 5,431 matches"
        follow.next_run_at = now + timedelta(seconds=follow.interval_seconds)
        follow.lease_owner = follow.lease_until = None
        db.session.commit()


def test_a_follow_added_on_the_sources_page_runs_and_shows_it(page, live_site):
    page.goto(live_site.url + "/sources")
    box = page.locator("#follow-mixpeek-prod")
    box.locator("summary", has_text="Follow a query").click()
    box.locator("textarea[name=query]").fill("status:FAILED")
    box.locator("input[name=interval]").fill("120")
    box.locator("button", has_text="Follow").click()
    expect(page.locator(".messages")).to_contain_text("now follows its query")
    status = page.locator("#follow-status-mixpeek-prod")
    expect(status).to_contain_text("status:FAILED")
    expect(status).to_contain_text("added here")
    # The refresher runs it at once; the status part shows the run without a reload.
    expect(status).to_contain_text("Found 0 new last run, 0 in all")
    expect(status).not_to_contain_text("Last run: never")
    expect(status).to_contain_text("next in 1")  # "next in 1 min 59 s" or so


def test_the_status_follows_a_run_under_way_and_the_forms_work(page, live_site):
    a_run_under_way_elsewhere(live_site.app, "ml-prod")
    page.goto(live_site.url + "/sources")
    page.evaluate("window.notReloaded = true")
    status = page.locator("#follow-status-ml-prod")
    expect(status).to_contain_text("running now")
    expect(status).to_have_attribute("data-polling", "true")
    finish_the_run_elsewhere(live_site.app, "ml-prod", 2)
    expect(status).to_contain_text("Found 2 new last run, 2 in all")
    expect(status).to_contain_text("tracked the newest 2 of 5,431 matches")
    expect(status).not_to_contain_text("running now")
    assert page.evaluate("window.notReloaded") is True

    box = page.locator("#follow-ml-prod")
    box.locator("button", has_text="Pause").click()
    expect(page.locator(".messages")).to_contain_text("Follow paused.")
    expect(status).to_contain_text("paused")
    expect(status).to_have_attribute("data-polling", "false")

    # A query the upstream could not read comes back with its message, as a page (422); the
    # browser itself keeps numbers in range (min, max, step on the fields).
    box.locator("summary", has_text="Edit the follow").click()
    expect(box.locator("input[name=interval]")).to_have_attribute("min", "5")
    box.locator("textarea[name=query]").fill('{"term": ')
    box.locator("button", has_text="Save").click()
    expect(box.locator(".follow-form-error")).to_contain_text("The query cannot be read")
    expect(box.locator("textarea[name=query]")).to_have_value('{"term": ')

    # Removing asks first; dismissed, nothing changes; accepted, the follow is gone.
    remove = page.locator("#follow-ml-prod button", has_text="Remove")
    asked: list[str] = []

    def answer(dialog, accept: bool) -> None:  # type: ignore[no-untyped-def]
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    remove.click()
    expect(status).to_contain_text("paused")
    page.once("dialog", lambda dialog: answer(dialog, True))
    remove.click()
    expect(page.locator(".messages")).to_contain_text("Stopped following")
    expect(page.locator("#follow-status-ml-prod")).to_contain_text("Follows no query.")
    assert asked == ["Stop following this query on ml-prod? The tasks it tracked stay tracked."] * 2
