"""Browser fixtures: Debian's Chromium through Playwright, and a live Taskdeck on loopback.

The dashboard and the simulators are served over real HTTP on free loopback ports with the
refresher running in the background, as in the demo; only the simulators' clock is manual, so
a test decides when an upstream task moves on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright

from webapp.refresher.background import BackgroundRefresher
from webapp.simulators.server import ServerThread

CHROMIUM = os.environ.get("TASKDECK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium():  # type: ignore[no-untyped-def]
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run ./scripts/setup.sh --test (it installs Debian's chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):  # type: ignore[no-untyped-def]
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # A loaded 2-core CI machine can take seconds for a swap; actions and expectations alike
    # wait up to 15 s for what they look for (still a deadline, never a sleep).
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    yield page
    context.close()


@dataclass
class LiveSite:
    app: Flask
    server: ServerThread

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def live_site(app_factory, make_source) -> Iterator[LiveSite]:  # type: ignore[no-untyped-def]
    sources = [
        make_source("opensearch-ml", name="ml-prod", poll_interval=0.3),
        make_source("mixpeek", name="mixpeek-prod", poll_interval=0.3),
    ]
    app = app_factory(sources, UI_POLL_SECONDS=1, REFRESH_TICK=0.1)
    background = BackgroundRefresher(app)
    background.start()
    server = ServerThread(app).start()
    try:
        yield LiveSite(app, server)
    finally:
        server.stop()
        background.stop()
