"""In Chromium, under the Content-Security-Policy: the pages work and nothing is refused.

Every violation is caught twice: by a ``securitypolicyviolation`` listener that an init
script installs before any page script runs, and by the console, where Chromium reports each
refused script, style or connection.
"""

from __future__ import annotations

import random
import re
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.conftest import track
from webapp.simulators import SIMULATORS

pytestmark = pytest.mark.browser

ML = SIMULATORS["opensearch-ml"]

RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI + " " +
                            event.sourceFile + ":" + event.lineNumber);
});
"""


@pytest.fixture
def watched(page):  # type: ignore[no-untyped-def]
    """The page, with every CSP violation and console error recorded."""
    console: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            console.append(message.text)
            if message.type == "error" or "Content Security Policy" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: console.append(f"page error: {error}"))
    yield page, console


def violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    return list(page.evaluate("window.cspViolations || []"))


def test_pages_work_under_the_policy_with_no_violation(watched, live_site, suite, clock):
    page, console = watched
    state = suite.states["opensearch-ml"]
    ML.add_demo_task(state, random.Random(2), task_id="csp/1", queued_seconds=5, running_seconds=10)
    ML.add_demo_task(state, random.Random(3), task_id="csp-2", queued_seconds=5, running_seconds=99)
    track(live_site.app, "ml-prod", "csp/1", "csp-2")
    # Each full page load starts a new record: read it before leaving a page.
    refused: dict[str, list[str]] = {}

    # The list, following its tasks live.
    response = page.goto(live_site.url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#task-rows tr .badge-state", has_text="queued")).to_have_count(2)
    clock.advance(6)
    expect(page.locator("#task-rows tr .badge-state", has_text="running")).to_have_count(2)
    # htmx's indicator rules come from app.css, not from a style element htmx injects.
    assert page.locator("style").count() == 0
    expect(page.locator("#loading")).to_be_hidden()
    refused[page.url] = violations(page)

    # The detail page: the timeline bar is drawn, and the status polls to the end.
    page.goto(f"{live_site.url}/tasks/ml-prod/{quote('csp/1', safe='')}")
    badge = page.locator("#task-status .badge-state")
    expect(badge).to_have_text("running")
    clock.advance(10)
    expect(badge).to_have_text("succeeded")
    page.reload()
    segments = page.locator("svg.timeline-bar rect.segment")
    expect(segments).to_have_count(3)
    assert all(segments.nth(i).bounding_box()["width"] > 0 for i in range(3))
    refused[page.url] = violations(page)

    # Boosted navigation to the sources page, then the import page.
    page.get_by_role("link", name="Sources", exact=True).click()
    expect(page.get_by_role("heading", name="Sources")).to_be_visible()
    refused[page.url] = violations(page)
    page.goto(live_site.url + "/tasks/import")
    expect(page.locator("#import-form")).to_be_visible()
    refused[page.url] = violations(page)
    page.goto(live_site.url + "/sources/new")
    expect(page.locator("form.source-form")).to_be_visible()
    refused[page.url] = violations(page)

    # Alert rules: the dry run comes back in place (htmx) before anything is saved.
    page.goto(live_site.url + "/notifications")
    page.locator("#rule-when").fill("state:problems")
    page.get_by_role("button", name="Try it on the last 7 days").click()
    expect(page.locator("#dry-run-result .dry-run-count")).to_have_text("0")
    refused[page.url] = violations(page)

    # The admin pages: people, tokens (one made, shown once with its copy button), the audit log.
    page.goto(live_site.url + "/users")
    expect(page.locator("table.users")).to_be_visible()
    refused[page.url] = violations(page)
    page.goto(live_site.url + "/tokens")
    page.locator("#token-name").fill("grafana")
    page.get_by_role("button", name="Create the token").click()
    expect(page.locator("#token-value")).to_have_value(re.compile(r"\S{20,}"))
    refused[page.url + "#made"] = violations(page)
    page.goto(live_site.url + "/audit")
    expect(page.locator("main")).to_contain_text("grafana")
    refused[page.url] = violations(page)

    assert refused == {url: [] for url in refused}
    assert [line for line in console if "Content Security Policy" in line] == []
    assert [line for line in console if "page error" in line] == []
