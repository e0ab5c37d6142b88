"""Security headers on every response, pages without inline code for the CSP to refuse, and
error pages that never show a stack trace or SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import jsonify

from tests.access.conftest import sign_in_as
from tests.access.urlmap import ROUTES
from tests.access.urlmap import module_app
from tests.access.urlmap import sample_url
from tests.conftest import track
from tests.helpers import soup
from webapp.access.roles import Role
from webapp.db.models import db
from webapp.web.headers import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[2]
#: Every page kind, fragment, file and answer a browser or script may ask for.
URLS = [
    "/",
    "/?view=all&state=active",
    "/tasks/ml-prod/job-1",
    "/tasks/ml-prod/job-1/status",
    "/tasks/ml-prod/job-1/raw.json",
    "/tasks/live",
    "/tasks/export.csv",
    "/tasks/export.json",
    "/tasks/import",
    "/sources",
    "/sources/new",
    "/api/v1/tasks",
    "/api/v1/tasks/ml-prod/job-1",
    "/api/v1/openapi.json",
    "/metrics",
    "/healthz",
    "/login",
    "/static/css/app.css",
    "/no/such/page",
]


@pytest.fixture
def ml_client(ml_app):
    track(ml_app, "ml-prod", "job-1")
    return ml_app.test_client()


@pytest.mark.parametrize("url", URLS)
def test_every_response_carries_the_security_headers(ml_client, url):
    response = ml_client.get(url)
    response.close()
    assert response.status_code < 500
    headers = response.headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in headers["Permissions-Policy"]


@pytest.fixture(scope="module")
def local_app(tmp_path_factory):
    """Sign-in on, with one person of each role."""
    with module_app(tmp_path_factory.mktemp("headers"), AUTH="local") as app:
        yield app


@pytest.mark.parametrize("endpoint", sorted({e for e, method in ROUTES if method == "GET"}))
def test_every_route_answers_strangers_and_admins_under_the_policy(local_app, endpoint):
    """Whatever the answer (a page, a sign-in redirect, a 401, a 403, a 404), it carries the
    headers: every GET route of the URL map, as a stranger and as an admin."""
    url = sample_url(local_app, endpoint)
    admin = sign_in_as(local_app, local_app.config["USER_IDS"][Role.ADMIN])
    for client in (local_app.test_client(), admin):
        with client.get(url) as response:
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
            assert response.headers["X-Content-Type-Options"] == "nosniff", url
            assert response.headers["X-Frame-Options"] == "DENY", url


def test_the_first_admin_page_carries_the_headers(app_factory):
    response = app_factory(AUTH="local").test_client().get("/")
    assert response.status_code == 503
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_policy_allows_no_inline_code_and_no_framing():
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


HTML_URLS = [u for u in URLS if not u.startswith(("/api", "/metrics", "/healthz", "/static"))]


@pytest.mark.parametrize("url", [u for u in HTML_URLS if "export" not in u and "raw" not in u])
def test_pages_have_no_inline_script_style_or_handler(ml_client, url):
    page = soup(ml_client.get(url))
    for script in page.find_all("script"):
        assert script.get("src", "").startswith("/static/"), script
        assert not script.string, script
    assert not page.find_all("style")
    for element in page.find_all(True):
        assert "style" not in element.attrs, element
        assert not [a for a in element.attrs if a.startswith(("on", "hx-on"))], element
    config = page.select_one('meta[name="htmx-config"]')
    if config is None:  # a fragment: the page it lands in has the config
        assert page.find("body") is None
        return
    assert '"includeIndicatorStyles": false' in config["content"]
    assert '"allowEval": false' in config["content"]


@pytest.mark.parametrize("template", sorted((ROOT / "templates").rglob("*.html")), ids=str)
def test_templates_hold_no_inline_code(template):
    text = template.read_text()
    assert not re.search(r"\sstyle=", text)
    assert "<style" not in text
    assert not re.search(r"<script(?![^>]*\ssrc=)", text)
    assert not re.search(r"\s(on[a-z]+|hx-on[:a-z-]*)=", text)
    assert "javascript:" not in text


@pytest.mark.parametrize("script", sorted((ROOT / "static" / "js").glob("*.js")), ids=str)
def test_our_scripts_build_no_markup_or_code_from_strings(script):
    text = script.read_text()
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert risky not in text, risky
    assert "new Function" not in text
    assert not re.search(r"setTimeout\(\s*['\"]", text)


LEAKS = (
    "Traceback",
    "RuntimeError",
    "no_such_table_marker",
    "SELECT",
    "sqlite3",
    "OperationalError",
)


@pytest.fixture
def failing_app(app_factory):
    app = app_factory()

    @app.get("/_boom")
    def boom():  # type: ignore[no-untyped-def]
        raise RuntimeError("internal detail marker")

    @app.get("/_sql")
    def bad_sql():  # type: ignore[no-untyped-def]
        db.session.execute(sa.text("SELECT secret FROM no_such_table_marker"))
        return "unreachable"

    @app.get("/api/v1/_boom")
    def api_boom():  # type: ignore[no-untyped-def]
        raise RuntimeError("internal detail marker")

    @app.get("/api/v1/_sql")
    def api_bad_sql():  # type: ignore[no-untyped-def]
        db.session.execute(sa.text("SELECT secret FROM no_such_table_marker"))
        return jsonify({})

    return app


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("url", ["/_boom", "/_sql", "/api/v1/_boom", "/api/v1/_sql"])
def test_errors_reach_people_without_trace_or_sql(failing_app, url, debug, caplog):
    failing_app.debug = debug
    response = failing_app.test_client().get(url)
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    for leak in (*LEAKS, "internal detail marker"):
        assert leak not in body, leak
    if url.startswith("/api/"):
        assert response.get_json() == {"error": "internal error", "status": 500}
    else:
        assert "Something went wrong" in soup(response).h1.get_text()
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    # The operator still gets the whole story in the log.
    assert any(record.exc_info for record in caplog.records)


def test_debug_is_off_unless_asked_for(app):
    assert not app.debug
