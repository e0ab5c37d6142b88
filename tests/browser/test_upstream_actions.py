"""In a real browser: confirm an upstream action on a live task and watch its state change on
the page, with no reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import fetched_state
from tests.conftest import track
from tests.conftest import wait_for

pytestmark = pytest.mark.browser

PHASES: list[tuple[str, float | None]] = [("PROCESSING", 999.0), ("COMPLETED", None)]


def test_cancel_after_the_confirmation_and_see_the_task_cancelled_live(
    page, live_site, suite, clock
):  # type: ignore[no-untyped-def]
    state = suite.states["mixpeek"]
    state.add("mx-live", PHASES)
    track(live_site.app, "mixpeek-prod", "mx-live")
    wait_for(
        lambda: fetched_state(live_site.app, "mixpeek-prod", "mx-live") == "PROCESSING",
        what="the first fetch",
    )
    page.goto(f"{live_site.url}/tasks/mixpeek-prod/mx-live")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#task-status .badge-state")).to_have_text("running")
    questions: list[str] = []

    def answer(dialog):  # type: ignore[no-untyped-def]
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.locator("#task-upstream-actions button[data-action=cancel]").click()

    expect(page.locator("#task-upstream-actions .action-result")).to_contain_text(
        "accepted upstream"
    )
    assert "mx-live" in questions[0] and "kills the task" in questions[0]
    # The forced refresh brings the upstream's new state; the poller shows it in place.
    expect(page.locator("#task-status .badge-state")).to_have_text("cancelled")
    expect(page.locator("#task-history .action-history")).to_contain_text(
        "cancel requested by anonymous"
    )
    # Nothing left to do to a cancelled task.
    expect(page.locator("#task-upstream-actions button")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
    assert state.calls["delete"] == 1


def test_dismissing_the_confirmation_sends_nothing(page, live_site, suite):  # type: ignore[no-untyped-def]
    state = suite.states["mixpeek"]
    state.add("mx-kept", PHASES)
    track(live_site.app, "mixpeek-prod", "mx-kept")
    wait_for(
        lambda: fetched_state(live_site.app, "mixpeek-prod", "mx-kept") == "PROCESSING",
        what="the first fetch",
    )
    page.goto(f"{live_site.url}/tasks/mixpeek-prod/mx-kept")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#task-upstream-actions button[data-action=cancel]").click()
    expect(page.locator("#task-upstream-actions button[data-action=cancel]")).to_be_visible()
    assert state.calls["delete"] == 0


def test_bulk_cancel_from_the_list_confirms_the_counts_then_shows_each_result(
    page, live_site, suite, clock
):  # type: ignore[no-untyped-def]
    suite.states["mixpeek"].add("mx-bulk", PHASES)
    suite.states["opensearch-ml"].add(
        "dep-bulk", [("RUNNING", 999.0), ("COMPLETED", None)], fields={"task_type": "DEPLOY_MODEL"}
    )
    track(live_site.app, "mixpeek-prod", "mx-bulk")
    track(live_site.app, "ml-prod", "dep-bulk")
    wait_for(
        lambda: (
            fetched_state(live_site.app, "mixpeek-prod", "mx-bulk") == "PROCESSING"
            and fetched_state(live_site.app, "ml-prod", "dep-bulk") == "RUNNING"
        ),
        what="the first fetches",
    )
    page.goto(f"{live_site.url}/?view=all")
    page.get_by_label("Tick mx-bulk").check()
    page.get_by_label("Tick dep-bulk").check()
    page.select_option("#bulk-action", "cancel")
    # No "stop tracking?" question: this button's confirmation is the next page.
    page.on("dialog", lambda dialog: pytest.fail(f"unexpected dialog: {dialog.message}"))
    page.get_by_role("button", name="Apply to ticked tasks…").click()

    expect(page.locator("[data-count=ready]")).to_have_text("1")
    expect(page.locator("[data-count=skipped]")).to_have_text("1")
    expect(page.locator(".bulk-skipped")).to_contain_text("dep-bulk")
    assert suite.states["mixpeek"].calls["delete"] == 0
    page.get_by_role("button", name="Cancel 1 task").click()

    result = page.locator(".bulk-results li[data-task='mixpeek-prod/mx-bulk']")
    expect(result).to_have_attribute("data-outcome", "done")
    assert suite.states["mixpeek"].calls["delete"] == 1


def test_deleting_a_finished_task_shows_it_gone_upstream_without_a_reload(page, live_site, suite):  # type: ignore[no-untyped-def]
    state = suite.states["opensearch-ml"]
    state.add("dep-done", [("COMPLETED", None)], fields={"task_type": "DEPLOY_MODEL"})
    track(live_site.app, "ml-prod", "dep-done")
    wait_for(
        lambda: fetched_state(live_site.app, "ml-prod", "dep-done") == "COMPLETED",
        what="the first fetch",
    )
    page.goto(f"{live_site.url}/tasks/ml-prod/dep-done")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#task-status")).to_have_attribute("data-polling", "false")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#task-upstream-actions button[data-action=delete]").click()

    expect(page.locator("#task-upstream-actions .action-result")).to_contain_text(
        "accepted upstream"
    )
    # The page of a finished task polls no more, yet it learns of the refresh once.
    expect(page.locator("#task-status")).to_contain_text("Gone upstream")
    expect(page.locator("#task-upstream-actions button")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
