"""Share links: an editor makes a signed, expiring link to one task's page; whoever has it reads
that page and nothing else, until it expires or is revoked."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from werkzeug.serving import make_server

from tests.access.people import form_token
from tests.access.people import signed_in
from tests.helpers import soup
from tests.helpers import track
from webapp.access import shares
from webapp.db import store
from webapp.db.models import AuditEvent
from webapp.db.models import ShareLink
from webapp.db.models import db
from webapp.db.models import utcnow

TASK = "/tasks/ml-prod/task-1"


@pytest.fixture
def app(app_factory, ml_source) -> Flask:
    app = app_factory([ml_source], AUTH="local")
    track(app, "ml-prod", "task-1", "task-2")
    return app


@pytest.fixture
def editor(app) -> FlaskClient:
    return signed_in(app, "ed", "editor")


def share(client: FlaskClient, expires: str = "1h", path: str = TASK) -> str:
    """Make a link from the task page's form; returns its path (``/share/<token>``)."""
    form = soup(client.get(path)).select_one("#task-sharing form")
    response = client.post(
        form["action"], data={"csrf_token": form_token(client), "expires": expires}
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    url = soup(response).select_one("#share-url")["value"]
    assert soup(response).select_one("button[data-copy]")["data-copy"] == url
    return urlsplit(url).path


def test_the_shared_page_shows_the_task_and_leads_nowhere_else(app, editor):
    with app.app_context():
        task = store.get_task("ml-prod", "task-1")
        task.error = "out of memory"
        task.raw = {"task_id": "task-1", "state": "FAILED"}
        db.session.commit()
    path = share(editor)
    stranger = app.test_client()
    response = stranger.get(path)
    assert response.status_code == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    page = soup(response)
    assert page.select_one("h1 .task-id").get_text() == "task-1"
    assert "out of memory" in page.select_one(".task-error").get_text()
    assert page.select_one("#task-history") and page.select_one("#task-details")
    assert '"FAILED"' in page.select_one("pre.json").get_text()
    # No way out: no site navigation, no forms or actions, no link into Taskdeck.
    assert page.select_one("nav[aria-label=Main]") is None
    assert page.select_one("nav.crumbs") is None
    assert page.select("form") == []
    assert page.select_one("#task-annotations") is None and page.select_one("#task-sharing") is None
    hrefs = [a["href"] for a in page.select("a[href]")]
    # The skip link and the no-script "refresh this page" are all that point within the site.
    assert [h for h in hrefs if not h.startswith(("http", "#"))] == [path]
    # The status widget polls under the token.
    assert page.select_one("#task-status")["hx-get"].startswith(path + "/status?v=")


def test_a_share_link_opens_nothing_but_its_task(app, editor):
    path = share(editor)
    stranger = app.test_client()
    assert stranger.get(path).status_code == 200
    # Whatever the visit left in the client's cookies signs nobody in.
    for other in ("/", TASK, "/tasks/ml-prod/task-2", "/tokens", "/audit", "/sources"):
        response = stranger.get(other)
        assert response.status_code == 302 and response.location.startswith("/login"), other
    assert stranger.get("/api/v1/tasks").status_code == 401
    assert stranger.get("/api/v1/tasks/ml-prod/task-1").status_code == 401
    assert stranger.get(TASK + "/status").status_code == 302
    # The token is no bearer token either.
    token = path.rsplit("/", 1)[1]
    bearer = {"Authorization": f"Bearer {token}"}
    assert stranger.get("/api/v1/tasks", headers=bearer).status_code == 401


@pytest.mark.parametrize(
    "tamper",
    [
        # The last base64 character also carries padding bits, which decoding drops: change
        # its high bits (A-P are 0-15, "z" is 51).
        pytest.param(lambda t: t[:-1] + ("z" if t[-1] in "ABCDEFGHIJKLMNOP" else "A"), id="last"),
        pytest.param(lambda t: t[:-8] + ("x" if t[-8] != "x" else "y") + t[-7:], id="signature"),
        pytest.param(lambda t: ("x" if t[0] != "x" else "y") + t[1:], id="first-char"),
        pytest.param(lambda t: t.split(".")[0], id="no-signature"),
        pytest.param(lambda t: "nonsense", id="garbage"),
    ],
)
def test_a_tampered_link_is_refused(app, editor, tamper):
    path = share(editor)
    token = path.rsplit("/", 1)[1]
    response = app.test_client().get(f"/share/{tamper(token)}")
    assert response.status_code == 404
    page = soup(response)
    assert "no longer valid" in page.select_one("h1").get_text()
    assert page.select_one("nav[aria-label=Main]") is None
    assert app.test_client().get(f"/share/{tamper(token)}/status").status_code == 404


def test_links_signed_otherwise_or_for_unknown_rows_are_refused(app, editor):
    path = share(editor)
    with app.app_context():
        link_id = db.session.scalar(sa.select(ShareLink.id))
    wrong_key = URLSafeTimedSerializer("another key", salt=shares.SALT).dumps(link_id)
    wrong_salt = URLSafeTimedSerializer("test", salt="other").dumps(link_id)
    unknown = URLSafeTimedSerializer("test", salt=shares.SALT).dumps(link_id + 1)
    client = app.test_client()
    for token in (wrong_key, wrong_salt, unknown):
        assert client.get(f"/share/{token}").status_code == 404
    assert client.get(path).status_code == 200


def test_a_link_expires_with_its_row(app, editor, monkeypatch):
    path = share(editor, "1h")
    client = app.test_client()
    assert client.get(path).status_code == 200
    later = utcnow() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(shares, "utcnow", lambda: later)
    assert client.get(path).status_code == 404
    assert client.get(path + "/status").status_code == 404
    # And no longer listed on the task's page.
    assert soup(editor.get(TASK)).select("#task-sharing table tbody tr") == []


def test_the_signature_expires_too_whatever_the_row_says(app, editor, monkeypatch):
    path = share(editor, "30d")
    with app.app_context():
        db.session.execute(sa.update(ShareLink).values(expires_at=utcnow() + timedelta(days=400)))
        db.session.commit()
    client = app.test_client()
    assert client.get(path).status_code == 200
    signed_at = time.time()
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: signed_at + 31 * 86400)
    assert client.get(path).status_code == 404


def test_every_expiry_choice_sets_the_row(app, editor):
    for key in ("1h", "1d", "7d", "30d"):
        share(editor, key)
    bad = editor.post(TASK + "/share", data={"csrf_token": form_token(editor), "expires": "1y"})
    assert bad.status_code == 303
    with app.app_context():
        links = list(db.session.scalars(sa.select(ShareLink).order_by(ShareLink.id)))
    lifetimes = [link.expires_at - link.created_at for link in links]
    assert lifetimes == [e.lifetime for e in shares.EXPIRIES]
    assert {link.created_by for link in links} == {"ed"}


def test_an_editor_revokes_a_link_from_the_task_page(app, editor):
    path = share(editor)
    client = app.test_client()
    assert client.get(path).status_code == 200
    rows = soup(editor.get(TASK)).select("#task-sharing table tbody tr")
    assert len(rows) == 1 and "ed" in rows[0].get_text()
    revoke = rows[0].select_one("form")
    response = editor.post(revoke["action"], data={"csrf_token": form_token(editor), "next": TASK})
    assert response.status_code == 303 and response.location == TASK
    assert client.get(path).status_code == 404
    assert soup(editor.get(TASK)).select("#task-sharing table tbody tr") == []
    with app.app_context():
        events = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))
    assert [(e.action, e.actor, e.target) for e in events] == [
        ("share.create", "ed", "ml-prod/task-1"),
        ("share.revoke", "ed", "ml-prod/task-1"),
    ]
    token = path.rsplit("/", 1)[1]
    assert all(token not in str(e.details) for e in events)


def test_viewers_neither_see_nor_make_share_links(app, editor):
    share(editor)
    viewer = signed_in(app, "vera", "viewer")
    page = soup(viewer.get(TASK))
    assert page.select_one("#task-sharing") is None
    refused = viewer.post(TASK + "/share", data={"csrf_token": form_token(viewer), "expires": "1h"})
    assert refused.status_code == 403
    with app.app_context():
        link_id = db.session.scalar(sa.select(ShareLink.id))
    revoke = viewer.post(f"/share/links/{link_id}/revoke", data={"csrf_token": form_token(viewer)})
    assert revoke.status_code == 403


def test_admins_see_every_open_link_on_the_tokens_page(app, editor):
    share(editor, path=TASK)
    share(editor, path="/tasks/ml-prod/task-2")
    admin = signed_in(app, "ada", "admin")
    rows = soup(admin.get("/tokens")).select("table.share-links tbody tr")
    assert [row.select_one("a").get_text() for row in rows] == ["ml-prod/task-1", "ml-prod/task-2"]


def test_untracking_ends_the_tasks_links(app, editor):
    path = share(editor)
    editor.post(TASK + "/untrack", data={"csrf_token": form_token(editor)})
    track(app, "ml-prod", "task-1")
    # The task is tracked again, afresh: the old link was to the life its sharer ended.
    assert app.test_client().get(path).status_code == 404


def test_the_status_fragment_polls_under_the_token_and_stops_when_final(app, editor):
    path = share(editor)
    client = app.test_client()
    with app.app_context():
        version = store.get_task("ml-prod", "task-1").version
    assert client.get(f"{path}/status?v={version}").status_code == 204
    changed = client.get(f"{path}/status?v={version - 1}")
    assert changed.status_code == 200
    assert soup(changed).select_one("#task-status")["data-polling"] == "true"
    with app.app_context():
        task = store.get_task("ml-prod", "task-1")
        task.state, task.terminal, task.version = "succeeded", True, task.version + 1
        db.session.commit()
    final = client.get(f"{path}/status?v={version}")
    assert final.status_code == 286
    fragment = soup(final)
    assert fragment.select_one("#task-status")["data-polling"] == "false"
    assert fragment.select_one("#task-history[hx-swap-oob]")
    hrefs = [a["href"] for a in fragment.select("a[href]")]
    assert [h for h in hrefs if not h.startswith(("http", "#", path))] == []


def test_share_tokens_are_masked_in_request_logs(app, editor, caplog):
    path = share(editor)
    token = path.rsplit("/", 1)[1]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    caplog.set_level(logging.INFO)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as http:
            assert http.get(path).status_code == 200
            assert http.get(path + "/status").status_code == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    request_lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("GET /share/*** HTTP/1.1" in line for line in request_lines), request_lines
    assert any("GET /share/***/status HTTP/1.1" in line for line in request_lines)
    # Gunicorn's access log formats its line from a dict of atoms, as here.
    logging.getLogger("gunicorn.access").info('"%(r)s" %(s)s', {"r": f"GET {path}", "s": "200"})
    assert '"GET /share/***" 200' in caplog.records[-1].getMessage()
    assert token not in caplog.text
