"""The follows on /sources: what each shows, the forms that change them, who may, and what a
hostile post gets (a precise message, never a 500)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.access.people import form_token
from tests.access.people import signed_in
from tests.helpers import csrf
from tests.helpers import soup
from webapp.db.models import AuditEvent
from webapp.db.models import Follow
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.follows import manage
from webapp.providers.opensearch_ml import OpenSearchMLProvider


@pytest.fixture
def app(app_factory, make_source):
    return app_factory(
        [make_source("opensearch-ml", name="ml-prod"), make_source("mixpeek", name="mx-prod")]
    )


@pytest.fixture
def client(app):
    return app.test_client()


def follow_row(app, source="ml-prod") -> Follow | None:
    with app.app_context():
        follow = db.session.get(Follow, source)
        if follow is not None:
            db.session.expunge(follow)
        return follow


def put_follow(app, source="ml-prod", *, origin="database", query="state:FAILED", **state):
    with app.app_context():
        settings = manage.read_settings(source, query, "60", "200")
        follow = manage.add(source, settings, actor=None)
        follow.origin = origin
        for key, value in state.items():
            setattr(follow, key, value)
        db.session.commit()


def actions(app) -> list[tuple[str, str | None]]:
    with app.app_context():
        rows = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        return [(e.action, e.target) for e in rows if e.action.startswith("follow.")]


def test_add_a_follow_then_see_it_on_the_page(app, client):
    page = soup(client.get("/sources"))
    form = page.select_one("#follow-ml-prod details.follow-form form")
    assert form["action"] == "/sources/ml-prod/follow"
    assert page.select_one("#follow-status-ml-prod")["data-polling"] == "false"
    response = client.post(
        form["action"],
        data={
            "csrf_token": csrf(client),
            "query": "state:FAILED",
            "interval": "30",
            "backfill": "",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/sources#source-ml-prod")
    follow = follow_row(app)
    assert (follow.query, follow.interval_seconds, follow.backfill_limit, follow.origin) == (
        "state:FAILED",
        30.0,
        200,
        "database",
    )
    status = soup(client.get("/sources")).select_one("#follow-status-ml-prod")
    text = status.get_text(" ", strip=True)
    assert "state:FAILED" in text and "every 30 s" in text and "added here" in text
    assert "active" in text and "due now" in text
    # A run is due: the status part refreshes itself.
    assert status["hx-get"] == "/sources/ml-prod/follow"
    assert status["hx-trigger"] == "every 3s"
    assert actions(app) == [("follow.add", "ml-prod")]


def test_the_status_shows_the_last_run_error_and_note(app, client):
    now = utcnow()
    put_follow(
        app,
        last_finished_at=now - timedelta(minutes=3),
        next_run_at=now + timedelta(seconds=40),
        last_found=7,
        total_found=1234,
        last_error="upstream answered 503",
        consecutive_failures=3,
        last_note="the first run tracked the newest 200 of 5,431",
    )
    status = soup(client.get("/sources")).select_one("#follow-status-ml-prod")
    text = status.get_text(" ", strip=True)
    assert "Last run: 3 min ago" in text
    assert "Found 7 new last run, 1,234 in all" in text
    assert "upstream answered 503" in text
    assert re.search(r"\(3 runs in a row failed; retries in (39|40) s\)", text)
    assert "the first run tracked the newest 200 of 5,431" in text
    # Between runs: one wake-up when the next run is due, not a poll every few seconds.
    assert status["hx-trigger"].startswith("load delay:")
    assert 40 <= int(status["hx-trigger"].removeprefix("load delay:").rstrip("s")) <= 41


def test_the_status_part_polls_while_running_and_stops_when_nothing_is_due(app, client):
    now = utcnow()
    put_follow(app, lease_owner="w1", lease_until=now + timedelta(seconds=30), next_run_at=now)
    running = client.get("/sources/ml-prod/follow")
    assert running.status_code == 200
    assert "running now" in soup(running).get_text()
    assert soup(running).select_one("#follow-status-ml-prod")["hx-trigger"] == "every 3s"
    with app.app_context():
        follow = db.session.get(Follow, "ml-prod")
        follow.lease_owner = follow.lease_until = None
        follow.paused = True
        db.session.commit()
    done = client.get("/sources/ml-prod/follow")
    assert done.status_code == 286
    assert not soup(done).select_one("#follow-status-ml-prod").has_attr("hx-trigger")
    assert client.get("/sources/nope/follow").status_code == 404


def test_a_due_run_nobody_takes_is_checked_slowly(app, client):
    put_follow(app, next_run_at=utcnow() - timedelta(minutes=5))
    status = soup(client.get("/sources/ml-prod/follow")).select_one("div")
    assert status["hx-trigger"] == "every 30s"
    assert "waiting for a refresher process" in status.get_text()


def test_edit_pause_resume_run_remove_are_audited(app, client):
    put_follow(app, next_run_at=utcnow() + timedelta(hours=1))
    token = csrf(client)
    base = "/sources/ml-prod/follow"
    page = soup(client.get("/sources"))
    assert {f["action"] for f in page.select("#follow-ml-prod form")} == {
        f"{base}/pause",
        f"{base}/run",
        f"{base}/remove",
        f"{base}/edit",
    }
    edit = {"csrf_token": token, "query": "state:COMPLETED", "interval": "60", "backfill": "200"}
    assert client.post(f"{base}/edit", data=edit).status_code == 303
    assert follow_row(app).next_run_at is None  # a new query starts over, at once
    assert client.post(f"{base}/pause", data={"csrf_token": token}).status_code == 303
    assert follow_row(app).paused
    assert "Resume" in soup(client.get("/sources")).select_one("#follow-ml-prod").get_text()
    assert client.post(f"{base}/resume", data={"csrf_token": token}).status_code == 303
    assert client.post(f"{base}/run", data={"csrf_token": token}).status_code == 303
    assert client.post(f"{base}/remove", data={"csrf_token": token}).status_code == 303
    assert follow_row(app) is None
    assert actions(app) == [
        ("follow.update", "ml-prod"),
        ("follow.pause", "ml-prod"),
        ("follow.resume", "ml-prod"),
        ("follow.run", "ml-prod"),
        ("follow.remove", "ml-prod"),
    ]
    assert client.post(f"{base}/pause", data={"csrf_token": token}).status_code == 404


def test_a_follow_from_the_file_may_be_paused_and_run_but_not_edited(app, client):
    put_follow(app, origin="file", next_run_at=utcnow() + timedelta(hours=1))
    token = csrf(client)
    box = soup(client.get("/sources")).select_one("#follow-ml-prod")
    assert "set in the configuration file" in box.get_text()
    assert {f["action"].rsplit("/", 1)[1] for f in box.select("form")} == {"pause", "run"}
    for change, data in [
        ("edit", {"query": "other", "interval": "60", "backfill": "200"}),
        ("remove", {}),
    ]:
        response = client.post(
            f"/sources/ml-prod/follow/{change}", data={"csrf_token": token, **data}
        )
        assert response.status_code == 422
        assert (
            "set in the configuration file"
            in soup(response).select_one("#follow-ml-prod .follow-form-error").get_text()
        )
    assert follow_row(app).query == "state:FAILED"
    assert (
        client.post("/sources/ml-prod/follow/pause", data={"csrf_token": token}).status_code == 303
    )
    assert actions(app) == [("follow.pause", "ml-prod")]


@pytest.mark.parametrize(
    ("path", "form", "words"),
    [
        ("/sources/ml-prod/follow", {"query": "x" * 5000}, "at most 4,000"),
        ("/sources/ml-prod/follow", {"query": '{"term":'}, "The query cannot be read"),
        ("/sources/ml-prod/follow", {"interval": "1"}, "between 5 and 86400 seconds"),
        ("/sources/ml-prod/follow", {"interval": "1e400"}, "between 5 and 86400 seconds"),
        ("/sources/ml-prod/follow", {"backfill": "-3"}, "between 1 and 10000 tasks"),
        ("/sources/ml-prod/follow", {"backfill": "many"}, "must be a number"),
        ("/sources/nope/follow", {}, "There is no source called “nope”"),
    ],
)
def test_hostile_posts_get_the_form_back_with_a_precise_message(app, client, path, form, words):
    response = client.post(path, data={"csrf_token": csrf(client), **form})
    assert response.status_code == 422
    alert = soup(response).select_one("[role=alert]")
    assert words in alert.get_text()
    assert follow_row(app) is None
    if "ml-prod" in path:
        typed = soup(response).select_one("#follow-ml-prod form")
        assert typed.find_parent("details").has_attr("open")
        for name, value in form.items():
            field = typed.select_one(f"[name={name}]")
            assert (field.get_text() if field.name == "textarea" else field["value"]) == value


def test_a_source_that_cannot_search_is_refused(app, client, monkeypatch):
    monkeypatch.setattr(OpenSearchMLProvider, "can_search", False)
    assert not soup(client.get("/sources")).select("#follow-ml-prod form")
    response = client.post("/sources/ml-prod/follow", data={"csrf_token": csrf(client)})
    assert response.status_code == 422
    assert "has no task search" in soup(response).select_one("[role=alert]").get_text()


def test_unknown_change_and_missing_csrf(app, client):
    put_follow(app)
    token = csrf(client)
    assert (
        client.post("/sources/ml-prod/follow/explode", data={"csrf_token": token}).status_code
        == 404
    )
    assert client.post("/sources/ml-prod/follow/pause").status_code == 400
    assert not follow_row(app).paused


def test_only_admins_change_follows_and_read_only_refuses(app_factory, make_source):
    app = app_factory([make_source("opensearch-ml", name="ml-prod")], AUTH="local")
    put_follow(app)
    editor = signed_in(app, "ed", "editor")
    viewer = signed_in(app, "vi", "viewer")
    for client in (viewer, editor):
        assert not soup(client.get("/sources")).select("#follow-ml-prod form")
        assert client.get("/sources/ml-prod/follow").status_code in (200, 286)
        response = client.post(
            "/sources/ml-prod/follow/pause", data={"csrf_token": form_token(client)}
        )
        assert response.status_code == 403
    admin = signed_in(app, "ad", "admin")
    response = admin.post("/sources/ml-prod/follow/pause", data={"csrf_token": form_token(admin)})
    assert response.status_code == 303
    with app.app_context():
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "follow.pause")
        ).one()
        assert event.actor == "ad"


def test_read_only_hides_and_refuses_follow_changes(app_factory, make_source):
    read_only = app_factory(
        [make_source("opensearch-ml", name="ml-prod")], AUTH="local", READ_ONLY=True
    )
    put_follow(read_only)
    admin = signed_in(read_only, "ad", "admin")
    assert not soup(admin.get("/sources")).select("#follow-ml-prod form")
    response = admin.post("/sources/ml-prod/follow/run", data={"csrf_token": form_token(admin)})
    assert response.status_code == 403
