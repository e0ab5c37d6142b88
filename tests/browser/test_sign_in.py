"""Signing in and out in Chromium, with the page's htmx boost on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.access.conftest import PASSWORD
from tests.access.conftest import add_user
from webapp.access import throttle
from webapp.access.roles import Role
from webapp.simulators.server import ServerThread


@pytest.fixture
def site(app_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = app_factory(AUTH="local")
    add_user(app, "ed", Role.EDITOR)
    with ServerThread(app) as server:
        yield server.url


def sign_in(page, password: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("User name").fill("ed")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_lands_where_asked_and_sign_out_ends_it(page, site):  # type: ignore[no-untyped-def]
    # Chromium reports each script, style or connection the CSP refuses as a console error.
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{site}/sources")
    expect(page).to_have_url(f"{site}/login?next=/sources")
    sign_in(page, PASSWORD)
    expect(page).to_have_url(f"{site}/sources")
    expect(page.locator(".site-header")).to_contain_text("ed (editor)")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{site}/login")
    page.goto(f"{site}/")
    expect(page).to_have_url(f"{site}/login?next=/")
    assert problems == []


def test_the_throttled_sign_in_page_says_when_to_retry(page, site):  # type: ignore[no-untyped-def]
    page.goto(f"{site}/login")
    for _ in range(throttle.ADDRESS_LIMIT):
        sign_in(page, "not the password")
    expect(page.locator(".message-error")).to_contain_text("Too many failed sign-ins")
    sign_in(page, PASSWORD)
    expect(page.locator(".message-error")).to_contain_text("Try again after")
    expect(page.locator(".site-header")).not_to_contain_text("ed (editor)")
