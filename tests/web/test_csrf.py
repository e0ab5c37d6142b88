"""CSRF (Flask-WTF): every write refuses a request without the session's token and takes one
with it; API calls with a bearer token are not held to it."""

from __future__ import annotations

import pytest
from flask import Flask
from flask import jsonify
from flask import url_for
from werkzeug.routing import IntegerConverter
from werkzeug.routing import Rule

from tests.helpers import csrf
from tests.helpers import soup
from tests.web.security import add_api_token
from webapp import create_app
from webapp.web.csrf import REFUSAL


def post_rules() -> list[Rule]:
    """Every rule of the app that takes POST, read from an app built the way the server is."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "rules",
            "DATABASE_URL": "sqlite://",
            "SOURCES": [],
            "REFRESHER": False,
            "AUTH": "none",
        }
    )
    return sorted(
        (rule for rule in app.url_map.iter_rules() if "POST" in (rule.methods or ())),
        key=lambda rule: rule.rule,
    )


def sample_url(app: Flask, endpoint: str) -> str:
    """A URL of ``endpoint`` with made-up arguments (each rule's converters decide the kind)."""
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    values = {
        name: 1 if isinstance(converter, IntegerConverter) else "x"
        for name, converter in rule._converters.items()
    }
    with app.test_request_context():
        return url_for(endpoint, **values)


POST_ENDPOINTS = [rule.endpoint for rule in post_rules()]


def test_the_app_has_writes_to_protect():
    assert {"tasks.track", "sources.create", "auth.login"} <= set(POST_ENDPOINTS)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_every_post_refuses_a_request_without_the_token(app, endpoint):
    client = app.test_client()
    url = sample_url(app, endpoint)
    csrf(client)  # the session exists, so only the token is missing

    missing = client.post(url, data={"x": "1"})
    assert missing.status_code == 400, url
    assert REFUSAL in soup(missing).get_text(" ")

    wrong = client.post(url, data={"csrf_token": "forged"}, headers={"HX-Request": "true"})
    assert wrong.status_code == 400, url


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_every_post_takes_the_token_from_the_form_or_the_htmx_header(app, endpoint):
    client = app.test_client()
    url = sample_url(app, endpoint)
    in_form = client.post(url, data={"csrf_token": csrf(client)})
    assert REFUSAL not in in_form.get_data(as_text=True), url
    # (Asked afresh: signing out, for one, ends the session and its token.)
    token = csrf(client)
    in_header = client.post(url, headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert REFUSAL not in in_header.get_data(as_text=True), url


def test_a_token_from_another_session_is_refused(app):
    theirs = csrf(app.test_client())
    mine = app.test_client()
    csrf(mine)
    response = mine.post("/tasks/track", data={"csrf_token": theirs, "task_ids": "x"})
    assert response.status_code == 400


def test_a_token_has_no_clock_of_its_own(app):
    """Dashboards stay open for hours: the token lasts as long as the session."""
    assert app.config["WTF_CSRF_TIME_LIMIT"] is None


@pytest.fixture
def api_app(app_factory):
    app = app_factory()

    @app.post("/api/v1/_echo")
    def echo():  # type: ignore[no-untyped-def]
        return jsonify({"ok": True})

    app.config["TEST_TOKEN"] = add_api_token(app)
    return app


def test_api_calls_with_a_bearer_token_need_no_csrf_token(api_app):
    client = api_app.test_client()
    token = api_app.config["TEST_TOKEN"]
    answer = client.post("/api/v1/_echo", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.get_json() == {"ok": True}


def test_api_calls_riding_on_the_session_cookie_need_the_token(api_app):
    client = api_app.test_client()
    csrf(client)
    refused = client.post("/api/v1/_echo", json={})
    assert refused.status_code == 400
    assert refused.get_json() == {"error": REFUSAL, "status": 400}
    # A bearer header only counts on the API: elsewhere the token is still needed.
    token = api_app.config["TEST_TOKEN"]
    page = client.post("/tasks/track", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 400
