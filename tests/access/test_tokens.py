"""API tokens: made and revoked from the command line and /tokens, bearer auth on /api/v1 and
/metrics only, scoped to a role, stored as a digest, and never shown again or logged."""

from __future__ import annotations

import logging
import re
import runpy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

import webapp
from tests.access.people import add_user
from tests.access.people import form_token
from tests.access.people import signed_in
from tests.helpers import soup
from webapp.access.guard import requires
from webapp.access.roles import Role
from webapp.access.tokens import token_digest
from webapp.db.models import ApiToken
from webapp.db.models import AuditEvent
from webapp.db.models import db

TOKEN_SHAPE = re.compile(r"^tdk_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def app(app_factory) -> Flask:
    app = app_factory(AUTH="local")
    # Someone can sign in, so pages send strangers to the sign-in form (with nobody yet, they
    # only explain how to make the first admin).
    add_user(app, "owner", "admin")

    # Routes to probe the role a token carries through the guard alone: an unmarked POST (the
    # default for writes: editor) and an admin-only one.
    @app.post("/api/v1/_probe")
    def probe_write() -> str:
        return "written"

    @app.get("/api/v1/_admin_probe")
    @requires(Role.ADMIN)
    def probe_admin() -> str:
        return "admin only"

    return app


def create_token(app: Flask, name: str, role: str = "viewer") -> str:
    result = app.test_cli_runner().invoke(args=["token", "create", name, "--role", role])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_create_prints_the_token_alone_and_stores_only_its_digest(app):
    result = app.test_cli_runner().invoke(args=["token", "create", "grafana", "--role", "viewer"])
    assert result.exit_code == 0, result.output
    # Standard output is the token and nothing else, so TOKEN=$(taskdeck token create …) works.
    assert TOKEN_SHAPE.match(result.stdout.strip()) and result.stdout.count("\n") == 1
    token = result.stdout.strip()
    assert "shown this once" in result.stderr and token not in result.stderr
    with app.app_context():
        row = db.session.scalar(sa.select(ApiToken))
        assert row.name == "grafana" and row.role == "viewer"
        assert row.token_hash == token_digest(token) and token not in row.token_hash
        assert row.created_by.startswith("cli:")


def test_token_create_refuses_a_taken_name_and_an_unknown_role(app):
    create_token(app, "ci")
    runner = app.test_cli_runner()
    again = runner.invoke(args=["token", "create", "ci"])
    assert again.exit_code != 0 and "exists already" in again.output and again.stdout == ""
    wrong = runner.invoke(args=["token", "create", "x", "--role", "root"])
    assert wrong.exit_code != 0 and "viewer" in wrong.output


def test_bearer_token_opens_the_api_and_metrics_and_records_its_last_use(app):
    token = create_token(app, "grafana")
    client = app.test_client()
    assert client.get("/api/v1/tasks").status_code == 401
    assert client.get("/metrics").status_code == 401
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken.last_used_at)) is None
    assert client.get("/api/v1/tasks", headers=bearer(token)).status_code == 200
    metrics = client.get("/metrics", headers=bearer(token))
    assert metrics.status_code == 200 and "taskdeck_tasks" in metrics.text
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken.last_used_at)) is not None
    assert client.get("/api/v1/tasks", headers=bearer(token + "x")).status_code == 401
    assert client.get("/api/v1/tasks", headers=bearer("tdk_" + "A" * 43)).status_code == 401


def test_a_token_acts_with_its_role_and_no_more(app):
    viewer, editor, admin = (create_token(app, r, r) for r in ("viewer", "editor", "admin"))
    client = app.test_client()
    assert client.get("/api/v1/tasks", headers=bearer(viewer)).status_code == 200
    write = client.post("/api/v1/_probe", headers=bearer(viewer))
    assert write.status_code == 403 and "editor" in write.json["error"]
    for token, status in ((viewer, 403), (editor, 403), (admin, 200)):
        assert client.get("/api/v1/_admin_probe", headers=bearer(token)).status_code == status


def test_a_revoked_token_is_refused_at_once(app):
    token = create_token(app, "ci")
    client = app.test_client()
    assert client.get("/api/v1/tasks", headers=bearer(token)).status_code == 200
    result = app.test_cli_runner().invoke(args=["token", "revoke", "ci"])
    assert result.exit_code == 0 and "revoked" in result.output
    assert client.get("/api/v1/tasks", headers=bearer(token)).status_code == 401
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 0
        actions = list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))
        assert actions == ["token.create", "token.revoke"]
    unknown = app.test_cli_runner().invoke(args=["token", "revoke", "ci"])
    assert unknown.exit_code != 0 and "no token called 'ci'" in unknown.output


def test_a_bearer_token_does_not_sign_in_to_pages(app):
    token = create_token(app, "admin-bot", "admin")
    client = app.test_client()
    for path in ("/", "/tokens", "/audit", "/sources"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 302 and response.location.startswith("/login"), path


def test_token_list_shows_names_roles_and_use_but_never_the_token(app):
    token = create_token(app, "grafana")
    create_token(app, "deploy", "editor")
    app.test_client().get("/metrics", headers=bearer(token))
    result = app.test_cli_runner().invoke(args=["token", "list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "STARTS", "CREATED", "LAST", "USED"]
    deploy, grafana = lines[1], lines[2]
    assert deploy.split()[:2] == ["deploy", "editor"] and deploy.endswith("never")
    assert grafana.split()[:2] == ["grafana", "viewer"] and not grafana.endswith("never")
    with app.app_context():
        digest = db.session.scalar(sa.select(ApiToken.token_hash).where(ApiToken.name == "grafana"))
    assert token not in result.output and digest not in result.output
    assert token[:8] in grafana  # the start, to tell tokens apart


def test_tokens_page_is_for_admins(app):
    create_token(app, "grafana")
    assert app.test_client().get("/tokens").status_code == 302
    for name, role in (("vera", "viewer"), ("ed", "editor")):
        client = signed_in(app, name, role)
        assert client.get("/tokens").status_code == 403
        refused = client.post("/tokens", data={"csrf_token": form_token(client), "name": "x"})
        assert refused.status_code == 403
        assert "Tokens" not in soup(client.get("/?view=all")).select_one("nav").get_text()
    admin = signed_in(app, "ada", "admin")
    page = soup(admin.get("/tokens"))
    assert [th.get_text() for th in page.select("table.tokens tbody th")] == ["grafana"]
    nav = [a.get_text() for a in soup(admin.get("/?view=all")).select("nav[aria-label=Main] a")]
    assert "Audit" in nav and "Tokens" in nav


def test_admin_makes_a_token_in_the_ui_sees_it_once_and_revokes_it(app):
    admin = signed_in(app, "ada", "admin")
    created = admin.post(
        "/tokens", data={"csrf_token": form_token(admin), "name": "ci", "role": "editor"}
    )
    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    page = soup(created)
    token = page.select_one("#token-value")["value"]
    assert TOKEN_SHAPE.match(token)
    assert page.select_one("button[data-copy]")["data-copy"] == token
    assert page.select_one("[hx-history=false]")  # kept out of htmx's localStorage cache

    listing = admin.get("/tokens")
    assert token not in listing.text
    row = soup(listing).select_one("table.tokens tbody tr")
    assert row.select_one("th").get_text() == "ci" and "editor" in row.get_text()
    api = app.test_client()
    assert api.get("/api/v1/tasks", headers=bearer(token)).status_code == 200
    assert "never" not in soup(admin.get("/tokens")).select_one("table.tokens tbody tr").text

    duplicate = admin.post("/tokens", data={"csrf_token": form_token(admin), "name": "ci"})
    assert duplicate.status_code == 422
    assert "exists already" in soup(duplicate).select_one(".message-error").get_text()

    revoke = row.select_one("form")["action"]
    assert admin.post(revoke, data={"csrf_token": form_token(admin)}).status_code == 303
    assert api.get("/api/v1/tasks", headers=bearer(token)).status_code == 401
    assert soup(admin.get("/tokens")).select_one("table.tokens") is None
    with app.app_context():
        events = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))
    assert [(e.action, e.actor, e.target) for e in events] == [
        ("token.create", "ada", "ci"),
        ("token.revoke", "ada", "ci"),
    ]
    assert all(token not in str(e.details) for e in events)


@pytest.fixture
def served(app) -> Iterator[str]:
    """The app behind werkzeug's own server with its request log on, as ``taskdeck run``."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_tokens_never_reach_the_logs(app, served, caplog, monkeypatch, tmp_path):
    token = create_token(app, "grafana")
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=served) as http:
        assert http.get("/api/v1/tasks", headers=bearer(token)).status_code == 200
        assert http.get("/metrics", headers=bearer(token)).status_code == 200
        assert http.get("/api/v1/tasks", headers=bearer(token + "x")).status_code == 401
        assert http.get("/", headers=bearer(token)).status_code == 302
    request_lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/api/v1/tasks" in line for line in request_lines)  # the log is on
    # Everything the server side logged (the test's own HTTP client logs at DEBUG too).
    server_side = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert token not in server_side and token_digest(token) not in server_side
    assert "Bearer tdk_" not in server_side and "tdk_" not in caplog.text
    # Gunicorn's access log names no request header but the request id.
    access_log_format = gunicorn_settings(monkeypatch, tmp_path)["access_log_format"]
    assert "authorization" not in access_log_format.lower()
    assert re.findall(r"\{([^}]+)\}i", access_log_format) == []


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The gunicorn config file's values, read without importing it: importing it points this
    process's metrics at a multiprocess folder, which would hide them from later tests."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    return runpy.run_path(str(Path(webapp.__file__).parent / "gunicorn_conf.py"))
