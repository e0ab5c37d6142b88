"""``TASKDECK_AUTH=proxy`` over real HTTP on loopback: the header names the user only when the
connection comes from a trusted proxy (here, the test itself on 127.0.0.1)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask

from tests.helpers import soup
from webapp.db.models import User
from webapp.db.models import db
from webapp.simulators.server import ServerThread

NAMED = {"X-Forwarded-User": "ana", "X-Forwarded-Email": "ana@example.org"}


@contextmanager
def serve(app: Flask) -> Iterator[httpx.Client]:
    """The app under a real WSGI server on 127.0.0.1, and a client that connects from there."""
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as client:
        yield client


@pytest.fixture
def trusted(app_factory: Callable[..., Flask]) -> Iterator[tuple[Flask, httpx.Client]]:
    app = app_factory(AUTH="proxy", TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1")
    with serve(app) as client:
        yield app, client


@pytest.fixture
def untrusted(app_factory: Callable[..., Flask]) -> Iterator[tuple[Flask, httpx.Client]]:
    app = app_factory(AUTH="proxy", TRUSTED_PROXIES="10.0.0.0/8")
    with serve(app) as client:
        yield app, client


def user(app: Flask, name: str) -> User | None:
    with app.app_context():
        found = db.session.scalar(sa.select(User).where(User.username == name))
        if found is not None:
            db.session.expunge(found)
        return found


def test_a_trusted_proxy_names_the_user_who_is_made_on_first_sight(trusted):
    app, client = trusted
    assert user(app, "ana") is None
    page = client.get("/", headers=NAMED)
    assert page.status_code == 200
    assert "ana (viewer)" in soup(page).select_one(".site-header").get_text()
    made = user(app, "ana")
    assert made is not None and made.role == "viewer" and made.email == "ana@example.org"
    assert made.password_hash is None and made.last_login_at is not None
    # Nothing to sign out of here: the proxy does that.
    assert not soup(page).select("form[action='/logout']")
    api = client.get("/api/v1/tasks", headers=NAMED)
    assert api.status_code == 200 and api.json()["tasks"] == []
    # The default role holds: a viewer writes nothing.
    refused = client.post("/sources", headers=NAMED)
    assert refused.status_code == 403


def test_an_admin_gives_a_proxy_user_a_role_that_applies_at_once(trusted):
    app, client = trusted
    client.get("/", headers=NAMED)
    assert client.get("/users", headers=NAMED).status_code == 403
    result = app.test_cli_runner().invoke(
        args=["create-user", "ana", "--update", "--role", "admin"]
    )
    assert result.exit_code == 0, result.output
    listing = client.get("/users", headers=NAMED)
    assert listing.status_code == 200
    assert "through the proxy" in soup(listing).select_one("table.users").get_text()


def test_a_trusted_proxy_that_names_nobody_is_refused(trusted):
    _, client = trusted
    page = client.get("/")
    assert page.status_code == 401
    assert "did not say who you are (no X-Forwarded-User header)" in page.text
    api = client.get("/api/v1/tasks")
    assert api.status_code == 401 and "X-Forwarded-User" in api.json()["error"]
    # A bearer token is the API's own way in, whatever the sign-in mode: an unknown one is a 401.
    unknown = client.get("/api/v1/tasks", headers={"Authorization": "Bearer tdk_nothing"})
    assert unknown.status_code == 401 and "Sign in first" in unknown.json()["error"]


def test_the_header_from_an_untrusted_peer_is_ignored_logged_and_refused(untrusted, caplog):
    app, client = untrusted
    with caplog.at_level(logging.WARNING, logger="webapp.access.proxy"):
        # X-Forwarded-For is anyone's to write: it does not make the peer a trusted proxy.
        page = client.get("/", headers={**NAMED, "X-Forwarded-For": "10.0.0.5"})
    assert page.status_code == 403
    assert "did not come through it" in page.text
    assert user(app, "ana") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "ignored X-Forwarded-User from 127.0.0.1, which is not in TASKDECK_TRUSTED_PROXIES"
    ]
    assert client.get("/healthz").status_code == 200  # public pages stay public
    assert client.get("/api/v1/tasks", headers=NAMED).status_code == 403


def test_headers_can_be_renamed_and_unusable_names_are_refused(app_factory):
    app = app_factory(
        AUTH="proxy",
        TRUSTED_PROXIES="127.0.0.1",
        PROXY_USER_HEADER="Remote-User",
        DEFAULT_ROLE="editor",
    )
    with serve(app) as client:
        assert client.get("/", headers=NAMED).status_code == 401  # not the header we read
        page = client.get("/", headers={"Remote-User": "bo"})
        assert page.status_code == 200 and "bo (editor)" in page.text
        too_long = client.get("/", headers={"Remote-User": "x" * 81})
        assert too_long.status_code == 403 and "cannot use" in too_long.text


def test_the_login_form_is_not_offered_behind_a_proxy(trusted):
    _, client = trusted
    page = client.get("/login")
    assert page.status_code == 200
    assert "through the organisation's sign-in proxy" in page.text
    assert not soup(page).select("form.login-form")
