"""In Chromium: the task page's status poll swaps what changed. A change of state moves the
status line and this task's cells in the family chart and leaves the chart in place; a change
in the family redraws the chart; the last answer stops the poll."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_csp import RECORD_VIOLATIONS
from tests.browser.test_csp import violations
from tests.links.test_page import seeded
from tests.links.test_status_poll import fetched
from webapp.domain import TaskState
from webapp.simulators.server import ServerThread

pytestmark = pytest.mark.browser

#: Set on the chart's table in the page: gone once the poll redraws the chart.
MARK = "document.querySelector('#task-family table.family-gantt').dataset.seen = 'yes'"
MARKED = "#task-family table.family-gantt[data-seen='yes']"


def test_the_poll_swaps_what_changed_and_stops_at_the_end(page, app_factory, make_source):
    app = seeded(app_factory, make_source, UI_POLL_SECONDS=1)
    server = ServerThread(app).start()
    page.add_init_script(RECORD_VIOLATIONS)
    try:
        page.goto(f"{server.url}/tasks/ml/trained")
        own_state = page.locator("#family-self-state .badge-state")
        expect(own_state).to_have_text("running")
        page.evaluate(MARK)

        fetched(app, "ml", "trained", TaskState.QUEUED, "WAITING")
        expect(page.locator("#task-status .upstream-word")).to_have_text("WAITING")
        expect(own_state).to_have_text("queued")
        expect(page.locator("#family-self-took")).to_contain_text("so far")
        expect(page.locator(MARKED)).to_have_count(1)  # the chart stayed as it was

        fetched(app, "ml", "deployed", TaskState.SUCCEEDED, "COMPLETED", terminal=True)
        fetched(app, "ml", "trained", TaskState.RUNNING, "RUNNING")
        expect(page.locator(MARKED)).to_have_count(0)  # redrawn with its sibling's new state
        expect(own_state).to_have_text("running")

        fetched(app, "ml", "trained", TaskState.SUCCEEDED, "COMPLETED", terminal=True)
        expect(page.locator("#task-status")).to_have_attribute("data-polling", "false")
        expect(own_state).to_have_text("succeeded")
        expect(page.locator("#family-self-took")).not_to_contain_text("so far")
        assert violations(page) == []
    finally:
        server.stop()
