"""The task list in Chromium: filter and search, sort, pages, shared URLs and the back button,
saved views, export, bulk untrack, live counts, import, and all of it without JavaScript."""

from __future__ import annotations

import csv
import random
import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.browser.conftest import LiveSite
from tests.conftest import track
from tests.listing.test_queries import add_task
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import TaskState
from webapp.simulators import SIMULATORS
from webapp.simulators.server import ServerThread

pytestmark = pytest.mark.browser

ML = SIMULATORS["opensearch-ml"]
STATES = [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.RUNNING, TaskState.SUCCEEDED]
TYPES = ["DEPLOY_MODEL", "TRAINING", "REGISTER_MODEL"]


@pytest.fixture
def list_site(app_factory, make_source) -> Iterator[LiveSite]:
    """Twelve tasks (task-11 newest) on a dashboard with no refresher: nothing moves unless a
    test moves it."""
    sources = [make_source("opensearch-ml", name="ml-prod"), make_source("mixpeek", name="mx")]
    app = app_factory(sources, UI_POLL_SECONDS=1)
    now = utcnow()
    with app.app_context():
        for i in range(12):
            add_task(
                "ml-prod" if i % 2 else "mx",
                f"task-{i:02d}",
                state=STATES[i % 4],
                task_type=TYPES[i % 3],
                created=now - timedelta(minutes=60 - i),
                error="CUDA out of memory" if STATES[i % 4] is TaskState.FAILED else None,
                labels=("nightly",) if i % 5 == 0 else (),
            )
        db.session.execute(db.update(Task).values(next_poll_at=None))
        db.session.commit()
    with ServerThread(app) as server:
        yield LiveSite(app, server)


def rows(page):  # type: ignore[no-untyped-def]
    return page.locator("#task-rows a.task-link")


def test_filter_and_search_update_the_list_and_the_url(page, list_site):
    page.goto(list_site.url + "/")
    page.evaluate("window.notReloaded = true")
    expect(rows(page)).to_have_count(12)
    page.fill("#q", "out of memory")  # search as you type
    expect(rows(page)).to_have_count(3)
    expect(page).to_have_url(re.compile(r"q=out\+of\+memory"))
    expect(page.locator("#summary a.count")).to_have_text(["3 failed"])
    page.select_option("#f-source", "ml-prod")
    expect(page).to_have_url(re.compile(r"source=ml-prod"))
    expect(rows(page)).to_have_text(["task-09", "task-05", "task-01"])
    page.select_option("#f-source", "")
    page.fill("#q", "state:running type:DEPLOY_MODEL")
    expect(rows(page)).to_have_text(["task-06"])
    # Empty fields are left out of the pushed URL.
    assert "type=&" not in page.url and "limit=" not in page.url
    assert page.evaluate("window.notReloaded") is True


def test_sort_page_share_and_go_back(page, list_site):
    page.goto(list_site.url + "/?limit=5")
    expect(rows(page)).to_have_text([f"task-{i:02d}" for i in (11, 10, 9, 8, 7)])
    page.click("th a:has-text('Type')")
    expect(page.locator("th[aria-sort]")).to_have_text(re.compile("Type"))
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "ascending")
    # DEPLOY_MODEL, REGISTER_MODEL, TRAINING; newest first within each.
    first_page = [f"task-{i:02d}" for i in (9, 6, 3, 0, 11)]
    expect(rows(page)).to_have_text(first_page)
    page.click("a[rel=next]")
    expect(page).to_have_url(re.compile(r"after="))
    second_page = [f"task-{i:02d}" for i in (8, 5, 2, 10, 7)]
    expect(rows(page)).to_have_text(second_page)

    shared = page.context.new_page()  # the URL alone reproduces the view
    shared.goto(page.url)
    expect(rows(shared)).to_have_text(second_page)
    expect(shared.locator("th[aria-sort]")).to_have_text(re.compile("Type"))
    shared.close()

    page.go_back()
    expect(rows(page)).to_have_text(first_page)
    page.go_back()
    expect(rows(page)).to_have_text([f"task-{i:02d}" for i in (11, 10, 9, 8, 7)])
    page.go_forward()
    expect(rows(page)).to_have_text(first_page)


def test_saved_view_becomes_the_team_default(page, list_site):
    page.goto(list_site.url + "/?state=failed")
    page.click("summary:has-text('Save this view')")
    page.fill("#view-name", "Failures")
    page.check("input[name=default]")
    page.click("button:has-text('Save view')")
    expect(page.locator(".messages")).to_contain_text("Saved the view “Failures”")
    expect(page.locator(".view-links a[aria-current=page]")).to_have_text("Failures")
    page.goto(list_site.url + "/")
    expect(page).to_have_url(re.compile(r"/\?state=failed$"))
    expect(rows(page)).to_have_count(3)
    page.click(".view-links a:has-text('All tasks')")
    expect(rows(page)).to_have_count(12)
    expect(page.locator(".view-links a[aria-current=page]")).to_have_text("All tasks")


def test_export_downloads_the_whole_view(page, list_site, tmp_path):
    page.goto(list_site.url + "/?q=label:nightly&sort=id&limit=1")
    with page.expect_download() as download:
        page.click(".export a:has-text('CSV')")
    path = tmp_path / "export.csv"
    download.value.save_as(path)
    assert download.value.suggested_filename.endswith(".csv")
    with path.open() as handle:
        exported = [row["task_id"] for row in csv.DictReader(handle)]
    assert exported == ["task-00", "task-05", "task-10"]  # every page, not just the one shown


def tick_every_row(page, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Tick the select-all box, again if a late swap of the list replaced it unticked."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            page.check("input[data-select-all]", timeout=2000)
            return
        except PlaywrightError:
            if time.monotonic() > deadline:
                raise


def test_untrack_ticked_rows(page, list_site):
    page.goto(list_site.url + "/tasks/ml-prod/task-01")
    page.click("nav.crumbs a:has-text('Tasks')")  # boosted: only the body is swapped
    expect(rows(page)).to_have_count(12)
    page.select_option("#f-type", "TRAINING")
    expect(rows(page)).to_have_count(4)
    # The filtered list is in once its URL is pushed; a swap still settling could otherwise
    # replace the box just ticked.
    expect(page).to_have_url(re.compile(r"type=TRAINING"))
    tick_every_row(page)
    expect(page.locator("#bulk-untrack input[name=task]:checked")).to_have_count(4)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Untrack ticked tasks')")
    expect(page.locator(".messages")).to_contain_text("Stopped tracking 4 tasks.")
    expect(page.locator("p.empty")).to_contain_text("No task matches")
    expect(page).to_have_url(re.compile(r"type=TRAINING"))


def test_counts_follow_live_updates(page, live_site, suite, clock):
    state = suite.states["opensearch-ml"]
    for i in range(2):
        ML.add_demo_task(state, random.Random(i), task_id=f"live-{i}", queued_seconds=1,
                         running_seconds=5)  # fmt: skip
    track(live_site.app, "ml-prod", "live-0", "live-1")
    page.goto(live_site.url + "/?source=ml-prod")
    # State counts only: the simulators' clock starts a year back, so to the wall-clock
    # refresher these queued tasks may also count as overdue.
    counts = page.locator("#summary a.count:not(.count-overdue)")
    expect(counts).to_have_text(["2 queued"])  # once the refresher's first fetch is in
    first_box = page.locator("#task-rows tr input[type=checkbox]").first
    first_box.check()
    clock.advance(2)
    expect(counts).to_have_text(["2 running"])
    expect(page.locator("tbody .badge-state", has_text="running")).to_have_count(2)
    expect(first_box).to_be_checked()  # its row was replaced by the live update
    clock.advance(10)
    expect(counts).to_have_text(["2 succeeded"])
    # No row is active any more; the first page still watches for newly tracked tasks (issue
    # 13: it used to stop polling here; a later page still does, tests/views/test_task_list.py).
    expect(page.locator("#live-poller")).not_to_contain_text("active task")
    expect(page.locator("#live-poller")).to_contain_text("Newly tracked tasks")


def test_import_with_preview_and_progress(page, live_site, suite):
    state = suite.states["opensearch-ml"]
    for i in range(3):
        ML.add_demo_task(state, random.Random(i), task_id=f"found-{i}")
    page.goto(live_site.url + "/")
    page.click(".track-panel a:has-text('Import from an upstream search')")  # open: no tasks yet
    expect(page.locator("h1")).to_have_text("Import from an upstream search")
    page.select_option("#import-source", "ml-prod")
    page.click("button:has-text('Preview')")
    expect(page.locator(".import-preview tbody tr")).to_have_count(3)
    page.click("#import-form button:has-text('Import')")
    expect(page.locator(".import-status")).to_contain_text("Done: 3 tracked")
    expect(page.locator("#import-job")).to_have_attribute("data-polling", "false")
    page.click("a:has-text('See ml-prod')")
    expect(rows(page)).to_have_count(3)


def test_the_list_works_without_javascript(chromium, list_site):
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(list_site.url + "/")
    expect(rows(page)).to_have_count(12)
    expect(page.locator("#live-poller noscript")).to_have_count(1)  # a refresh link instead
    page.fill("#q", "memory")
    page.select_option("#f-source", "ml-prod")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"/\?source=ml-prod&q=memory$"))  # short, shareable
    expect(rows(page)).to_have_text(["task-09", "task-05", "task-01"])
    page.click("th a:has-text('Task')")
    expect(rows(page)).to_have_text(["task-01", "task-05", "task-09"])
    page.goto(list_site.url + "/?limit=5")
    page.click("a[rel=next]")
    expect(rows(page)).to_have_count(5)
    page.goto(list_site.url + "/?state=failed")
    page.click("a:has-text('Charts for this view')")
    expect(page.locator("#charts svg.chart")).to_have_count(2)
    page.goto(list_site.url + "/?type=TRAINING")
    page.check("#task-rows tr input[type=checkbox] >> nth=0")
    page.click("button:has-text('Untrack ticked tasks')")
    expect(page.locator(".messages")).to_contain_text("Stopped tracking 1 task.")
    expect(rows(page)).to_have_count(3)
    context.close()
