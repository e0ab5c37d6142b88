"""The audit log: who changed what and when, recorded with the change, read by admins on /audit
(filtered, paged) and exported as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.access.people import PASSWORD
from tests.access.people import form_token
from tests.access.people import signed_in
from tests.helpers import soup
from tests.helpers import track
from tests.helpers import wait_for
from webapp.access import audit
from webapp.db.models import AuditEvent
from webapp.db.models import ImportJob
from webapp.db.models import SavedView
from webapp.db.models import db
from webapp.simulators import SIMULATORS


@pytest.fixture
def app(app_factory, ml_source) -> Flask:
    return app_factory([ml_source], AUTH="local")


def events(app: Flask) -> list[tuple[str, str, str | None]]:
    with app.app_context():
        rows = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        return [(e.actor, e.action, e.target) for e in rows]


def add_events(app: Flask, *specs: tuple[str, str, str, datetime]) -> None:
    """Events as if recorded by ``actor`` at ``at``."""
    with app.app_context():
        for actor, action, target, at in specs:
            db.session.add(
                AuditEvent(at=at, actor=actor, actor_kind="user", action=action, target=target)
            )
        db.session.commit()


def test_an_editors_changes_are_recorded_with_who_and_what(app, ml_state):
    editor = signed_in(app, "ed", "editor")
    token = form_token(editor)
    tracked = editor.post(
        "/tasks/track", data={"csrf_token": token, "source": "ml-prod", "task_ids": "a1 a2 a3"}
    )
    assert tracked.status_code == 303
    editor.post(
        "/tasks/ml-prod/a1/annotations",
        data={"csrf_token": token, "labels": "nightly, gpu", "note": "watch it"},
    )
    editor.post("/tasks/ml-prod/a1/untrack", data={"csrf_token": token})
    with app.app_context():
        ids = [str(i) for i in db.session.scalars(sa.text("SELECT id FROM tasks ORDER BY id"))]
    editor.post("/tasks/untrack", data={"csrf_token": token, "task": ids})
    editor.post("/views", data={"csrf_token": token, "name": "Failures", "query": "state=failed"})
    with app.app_context():
        view_id = db.session.scalar(sa.select(SavedView.id))
    editor.post(f"/views/{view_id}/default", data={"csrf_token": token, "default": "1"})
    editor.post(f"/views/{view_id}/delete", data={"csrf_token": token})
    assert events(app) == [
        ("ed", "task.track", "ml-prod/a1"),
        ("ed", "task.track", "ml-prod/a2"),
        ("ed", "task.track", "ml-prod/a3"),
        ("ed", "task.annotate", "ml-prod/a1"),
        ("ed", "task.untrack", "ml-prod/a1"),
        ("ed", "task.untrack", "ml-prod/a2"),
        ("ed", "task.untrack", "ml-prod/a3"),
        ("ed", "view.create", "Failures"),
        ("ed", "view.default", "Failures"),
        ("ed", "view.delete", "Failures"),
    ]
    with app.app_context():
        annotate = db.session.scalar(
            sa.select(AuditEvent).where(AuditEvent.action == "task.annotate")
        )
        assert annotate.details == {"labels": ["nightly", "gpu"], "note": "watch it"}
        assert annotate.remote_addr == "127.0.0.1" and annotate.actor_kind == "user"

    # Tracking what is tracked already changes nothing, and records nothing.
    before = len(events(app))
    track(app, "ml-prod", "b1")
    editor.post("/tasks/track", data={"csrf_token": token, "source": "ml-prod", "task_ids": "b1"})
    assert len(events(app)) == before


def test_imports_are_recorded_from_the_web_and_the_command_line(app, ml_state):
    for i in range(3):
        SIMULATORS["opensearch-ml"].add_demo_task(ml_state, random.Random(i), task_id=f"job-{i}")
    editor = signed_in(app, "ed", "editor")
    form = {"csrf_token": form_token(editor), "source": "ml-prod", "query": "", "limit": "10"}
    assert editor.post("/tasks/import", data=form).status_code == 303

    def import_over() -> bool:
        with app.app_context():
            return db.session.scalar(sa.select(ImportJob.status)) == "done"

    wait_for(import_over, what="the import")
    result = app.test_cli_runner().invoke(args=["import", "ml-prod", "--limit", "10"])
    assert result.exit_code == 0, result.output
    result = app.test_cli_runner().invoke(args=["track", "ml-prod", "cli-1"])
    assert result.exit_code == 0, result.output
    recorded = events(app)
    assert recorded[0] == ("ed", "task.import", "ml-prod")
    actor, action, target = recorded[1]
    assert actor.startswith("cli:") and (action, target) == ("task.import", "ml-prod")
    assert recorded[2][1:] == ("task.track", "ml-prod/cli-1")
    with app.app_context():
        details = [e.details for e in db.session.scalars(sa.select(AuditEvent))]
    assert details[0]["limit"] == 10 and details[1]["skipped"] == 3


def test_source_changes_name_the_settings_but_never_a_credential(app, monkeypatch, sim_server):
    monkeypatch.setenv("TEAM_MIXPEEK_KEY", "sk_test_demo_key")
    admin = signed_in(app, "ada", "admin")
    form = {
        "csrf_token": form_token(admin),
        "name": "team-mixpeek",
        "provider": "mixpeek",
        "base_url": f"{sim_server.url}/mixpeek",
        "api_key_env": "TEAM_MIXPEEK_KEY",
        "verify_tls": "on",
    }
    assert admin.post("/sources", data=form).status_code == 303
    assert (
        admin.post("/sources/team-mixpeek", data={**form, "poll_interval": "30"}).status_code == 303
    )
    with app.app_context():
        rows = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))
    assert [(e.actor, e.action, e.target) for e in rows] == [
        ("ada", "source.create", "team-mixpeek"),
        ("ada", "source.update", "team-mixpeek"),
    ]
    assert rows[1].details == {"provider": "mixpeek", "changed": ["poll_interval"]}
    assert "credentials.api_key_env" in rows[0].details["changed"]
    assert all("sk_test_demo_key" not in json.dumps(e.details) for e in rows)


def test_record_refuses_secret_details_and_names_the_command_line_user(app):
    with app.app_context():
        with pytest.raises(ValueError, match="token"):
            audit.record("token.create", "x", token="tdk_secret")
        event = audit.record("view.create", "v", commit=True)
        assert event.actor.startswith("cli:") and event.actor_kind == "cli"
        assert event.remote_addr is None


def test_the_audit_page_is_for_admins(app):
    add_events(app, ("ed", "task.track", "ml-prod/a1", datetime.now(UTC)))
    editor = signed_in(app, "ed", "editor")
    # Once someone can sign in (before, every page explains how to make the first admin).
    assert app.test_client().get("/audit").status_code == 302
    for path in ("/audit", "/audit/export.csv", "/audit/export.json"):
        assert editor.get(path).status_code == 403
    assert "Audit" not in soup(editor.get("/?view=all")).select_one("nav").get_text()
    admin = signed_in(app, "ada", "admin")
    page = soup(admin.get("/audit"))
    cells = [td.get_text(" ", strip=True) for td in page.select("table.audit tbody tr td")]
    assert "ed user" in cells and "task.track" in cells and "ml-prod/a1" in cells


BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def logged(app) -> Flask:
    add_events(
        app,
        ("ed", "task.track", "ml-prod/a1", BASE),
        ("ed", "task.untrack", "ml-prod/a1", BASE + timedelta(hours=1)),
        ("ada", "token.create", "grafana", BASE + timedelta(hours=2)),
        ("ed", "task.track", "other/b2", BASE + timedelta(hours=3)),
        ("ada", "source.update", "ml-prod", BASE + timedelta(hours=4)),
    )
    return app


def targets(page) -> list[str]:
    return [row.select("td")[3].get_text() for row in page.select("table.audit tbody tr")]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["ml-prod", "other/b2", "grafana", "ml-prod/a1", "ml-prod/a1"]),
        ("actor=ed", ["other/b2", "ml-prod/a1", "ml-prod/a1"]),
        ("action=task.track", ["other/b2", "ml-prod/a1"]),
        ("target=ml-prod", ["ml-prod", "ml-prod/a1", "ml-prod/a1"]),
        ("target=%25", []),  # a literal %, not a wildcard
        # From is inclusive, until exclusive (the event at 15:00 is left out).
        ("since=2026-11-30T13:00&until=2026-11-30T15:00", ["grafana", "ml-prod/a1"]),
        ("actor=ed&action=task.track&since=2026-11-30T12:30", ["other/b2"]),
    ],
)
def test_filters_live_in_the_query_string(logged, query, expected):
    admin = signed_in(logged, "root", "admin")
    page = soup(admin.get(f"/audit?{query}"))
    assert targets(page) == expected
    actions = [o["value"] for o in page.select("select[name=action] option")]
    assert set(audit.ACTIONS) <= set(actions)
    # The exports carry the same filters.
    csv_link = page.select_one("a[href^='/audit/export.csv']")["href"]
    assert (
        csv_link.partition("?")[2]
        == page.select_one("a[href^='/audit/export.json']")["href"].partition("?")[2]
    )


def test_a_malformed_time_is_said_plainly(logged):
    admin = signed_in(logged, "root", "admin")
    response = admin.get("/audit?since=yesterday")
    assert response.status_code == 400
    assert "since" in soup(response).select_one(".message-error").get_text()


def test_pages_follow_each_other_by_keyset(logged, monkeypatch):
    monkeypatch.setattr(audit, "PAGE_SIZE", 2)
    admin = signed_in(logged, "root", "admin")
    seen: list[str] = []
    url = "/audit?actor=ed"
    page = soup(admin.get(url))
    seen += targets(page)
    older = page.select_one("a[rel=next]")
    assert older and "actor=ed" in older["href"]
    page = soup(admin.get(older["href"]))
    seen += targets(page)
    assert page.select_one("a[rel=next]") is None
    assert seen == ["other/b2", "ml-prod/a1", "ml-prod/a1"]


def test_csv_and_json_exports(logged):
    add_events(logged, ("ed", "task.annotate", '=HYPERLINK("x")', BASE + timedelta(hours=5)))
    admin = signed_in(logged, "root", "admin")
    exported = admin.get("/audit/export.csv?actor=ed")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert exported.headers["Content-Disposition"] == 'attachment; filename="taskdeck-audit.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [r["target"] for r in rows] == [
        '\'=HYPERLINK("x")',  # a spreadsheet would run it as a formula otherwise
        "other/b2",
        "ml-prod/a1",
        "ml-prod/a1",
    ]
    assert rows[1]["action"] == "task.track" and rows[1]["at"].startswith("2026-11-30T15:00")
    assert json.loads(rows[1]["details"]) == {}

    document = admin.get("/audit/export.json?action=task.track")
    assert document.mimetype == "application/json"
    items = json.loads(document.get_data(as_text=True))
    assert [(i["actor"], i["target"]) for i in items] == [("ed", "other/b2"), ("ed", "ml-prod/a1")]
    assert set(items[0]) == {
        "id",
        "at",
        "actor",
        "actor_kind",
        "action",
        "target",
        "details",
        "remote_addr",
    }
    assert json.loads(admin.get("/audit/export.json?actor=nobody").get_data(as_text=True)) == []


def test_account_changes_are_recorded_from_the_cli_the_users_page_and_a_proxy(
    app, app_factory, monkeypatch
):
    monkeypatch.setattr(audit, "_login_name", lambda: "ops")
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["create-user", "root", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert made.exit_code == 0, made.output
    changed = runner.invoke(args=["create-user", "root", "--update", "--email", "r@example.org"])
    assert changed.exit_code == 0, changed.output
    admin = signed_in(app, "root")
    response = admin.post(
        "/users",
        data={
            "csrf_token": form_token(admin, "/users"),
            "username": "bo",
            "role": "editor",
            "password": "another long one",
        },
    )
    assert response.status_code == 303
    assert events(app) == [
        ("cli:ops", "user.create", "root"),
        ("cli:ops", "user.update", "root"),
        ("root", "user.create", "bo"),
    ]
    with app.app_context():
        first = db.session.scalar(sa.select(AuditEvent).order_by(AuditEvent.id))
        assert first is not None
        assert first.details == {"role": "admin", "changed": ["role", "password"]}
        # The password itself is never a detail: only that one was set.
        assert PASSWORD not in json.dumps(
            [e.details for e in db.session.scalars(sa.select(AuditEvent))]
        )

    proxied = app_factory(AUTH="proxy", TRUSTED_PROXIES="127.0.0.1")
    page = proxied.test_client().get(
        "/", headers={"X-Forwarded-User": "cy"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    assert page.status_code == 200
    assert events(proxied)[-1] == ("cy", "user.create", "cy")
