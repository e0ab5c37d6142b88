"""``POST /api/v1/tasks``: tracking pushed by pipelines. Idempotent, all or nothing, validated
with a message naming each bad item and field, limited in size, for editors only."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.access.people import add_user
from tests.access.people import form_token
from tests.access.people import signed_in
from webapp.access import tokens
from webapp.access.roles import Role
from webapp.db import store
from webapp.db.models import AuditEvent
from webapp.db.models import Task
from webapp.db.models import db
from webapp.views import api
from webapp.web import push

URL = "/api/v1/tasks"


def create_token(app: Flask, name: str, role: str) -> str:
    result = app.test_cli_runner().invoke(args=["token", "create", name, "--role", role])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(app_factory, ml_source, make_source) -> Flask:
    mixpeek = make_source("mixpeek", name="mx-prod")
    app = app_factory([ml_source, mixpeek], AUTH="local")
    add_user(app, "owner", "admin")
    return app


@pytest.fixture
def editor(app: Flask) -> dict[str, str]:
    return bearer(create_token(app, "ci-pipeline", "editor"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, body: Any, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    # Serialized here: keys keep their order, and ``None`` is the JSON ``null``.
    return client.post(URL, data=json.dumps(body), headers=headers, content_type="application/json")


def tasks(app: Flask) -> list[Task]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Task).order_by(Task.id)))
        db.session.expunge_all()
        return rows


def track_events(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        events = list(
            db.session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.action == "task.track")
                .order_by(AuditEvent.id)
            )
        )
        db.session.expunge_all()
        return events


# -- tracking, idempotently -------------------------------------------------------------------


def test_a_pushed_task_is_tracked_due_at_once_and_answered_not_yet_fetched(app, client, editor):
    answer = post(
        client,
        {
            "source": "ml-prod",
            "task_id": "run/42 ?%",
            "labels": ["Nightly", "gpu", "nightly"],
            "note": "  from the nightly build  ",
        },
        editor,
    )
    assert answer.status_code == 201, answer.text
    task = answer.get_json()
    assert answer.headers["Location"] == "http://localhost/api/v1/tasks/ml-prod/run%2F42%20%3F%25"
    assert task["source"] == "ml-prod" and task["task_id"] == "run/42 ?%"
    assert task["provider"] == "opensearch-ml"
    assert task["state"] == "unknown" and task["last_fetched_at"] is None
    assert task["history"] == [] and task["links"]["self"].endswith(
        "/tasks/ml-prod/run%2F42%20%3F%25"
    )
    # The Location leads to the same task.
    assert (
        client.get(answer.headers["Location"], headers=editor).get_json()["task_id"] == "run/42 ?%"
    )

    [row] = tasks(app)
    assert row.tracked_via == "push"
    assert row.labels == ["nightly", "gpu"] and row.note == "from the nightly build"
    assert row.next_poll_at is not None and row.next_poll_at <= row.tracked_at
    [event] = track_events(app)
    assert event.actor == "ci-pipeline" and event.actor_kind == "token"
    assert event.target == "ml-prod/run/42 ?%"
    assert event.details["via"] == "push" and event.details["labels"] == ["nightly", "gpu"]


def test_a_second_push_of_the_same_id_changes_nothing_and_answers_the_task(app, client, editor):
    first = post(
        client, {"source": "ml-prod", "task_id": "t-1", "labels": ["a"], "note": "n"}, editor
    )
    assert first.status_code == 201
    with app.app_context():
        before = db.session.scalar(sa.select(Task))
        snapshot = {c.name: getattr(before, c.name) for c in Task.__table__.columns}
    again = post(
        client, {"source": "ml-prod", "task_id": "t-1", "labels": ["b"], "note": "other"}, editor
    )
    assert again.status_code == 200 and "Location" not in again.headers
    assert again.get_json() == first.get_json()
    with app.app_context():
        after = db.session.scalar(sa.select(Task))
        assert {c.name: getattr(after, c.name) for c in Task.__table__.columns} == snapshot
    assert len(track_events(app)) == 1


def test_a_list_is_answered_in_order_201_when_any_is_new_else_200(app, client, editor):
    post(client, {"source": "ml-prod", "task_id": "old", "note": "kept"}, editor)
    body = [
        {"source": "mx-prod", "task_id": "new-1", "labels": ["x"]},
        {"source": "ml-prod", "task_id": "old", "note": "ignored"},
        {"source": "ml-prod", "task_id": "new-2"},
    ]
    answer = post(client, body, editor)
    assert answer.status_code == 201 and "Location" not in answer.headers
    listed = answer.get_json()
    assert [(t["source"], t["task_id"]) for t in listed] == [
        ("mx-prod", "new-1"),
        ("ml-prod", "old"),
        ("ml-prod", "new-2"),
    ]
    assert listed[0]["provider"] == "mixpeek"
    again = post(client, body, editor)
    assert again.status_code == 200 and again.get_json() == listed
    rows = {(t.source, t.task_id): t for t in tasks(app)}
    assert rows[("ml-prod", "old")].note == "kept" and rows[("mx-prod", "new-1")].labels == ["x"]
    assert [e.target for e in track_events(app)] == [
        "ml-prod/old",
        "mx-prod/new-1",
        "ml-prod/new-2",
    ]


def test_the_same_id_twice_in_one_list_is_tracked_once(app, client, editor):
    item = {"source": "ml-prod", "task_id": "twice"}
    answer = post(client, [item, {**item, "labels": ["late"]}], editor)
    assert answer.status_code == 201
    first, second = answer.get_json()
    assert first == second
    [row] = tasks(app)
    assert row.labels == []
    assert len(track_events(app)) == 1


def test_a_new_task_is_not_fetched_by_the_request_itself(app, client, editor):
    """The answer never waits on the upstream: the refresher does the fetching."""
    post(client, {"source": "ml-prod", "task_id": "quick"}, editor)
    [row] = tasks(app)
    assert row.last_fetched_at is None and row.lease_owner is None


def test_the_refresher_is_woken_for_new_tasks_only(app, client, editor, monkeypatch):
    woken: list[Flask] = []
    monkeypatch.setattr(api, "wake_background", woken.append)
    assert post(client, GOOD, editor).status_code == 201
    assert len(woken) == 1
    assert post(client, [GOOD], editor).status_code == 200
    assert len(woken) == 1


def test_a_push_racing_another_for_the_same_id_answers_the_row_the_other_made(
    app, client, editor, monkeypatch
):
    """Two pushes of one id at once: the loser's insert hits the unique key; it starts over
    and finds the winner's row instead of failing."""
    post(client, GOOD, editor)
    real_get_task = store.get_task
    missed: list[str] = []

    def not_yet_visible(source: str, task_id: str):  # type: ignore[no-untyped-def]
        if task_id == "fine" and not missed:  # looked before the other push committed
            missed.append(task_id)
            return None
        return real_get_task(source, task_id)

    monkeypatch.setattr(store, "get_task", not_yet_visible)
    answer = post(client, [{"source": "ml-prod", "task_id": "other"}, GOOD], editor)
    assert missed == ["fine"]
    assert answer.status_code == 201, answer.text
    assert [t["task_id"] for t in answer.get_json()] == ["other", "fine"]
    assert sorted(t.task_id for t in tasks(app)) == ["fine", "other"]
    assert [e.target for e in track_events(app)] == ["ml-prod/fine", "ml-prod/other"]


# -- validation: all or nothing, each problem named --------------------------------------------

LONG_ID = "x" * 513
GOOD = {"source": "ml-prod", "task_id": "fine"}

BAD_BODIES = [
    pytest.param(
        {"source": "nope", "task_id": "1"},
        [(None, "source", "no source is called 'nope'; the sources are ml-prod, mx-prod")],
        id="unknown-source",
    ),
    pytest.param(
        [GOOD, {"source": "nope", "task_id": "1"}],
        [(1, "source", "no source is called 'nope'")],
        id="unknown-source-in-a-list",
    ),
    pytest.param(
        {"source": "ml-prod", "task_id": ""},
        [(None, "task_id", "must not be empty")],
        id="empty-id",
    ),
    pytest.param(
        {"source": "ml-prod", "task_id": LONG_ID},
        [(None, "task_id", "is longer than 512 characters")],
        id="long-id",
    ),
    pytest.param(
        [GOOD, {"source": "ml-prod", "task_id": "a\nb"}],
        [(1, "task_id", "must not hold control characters (found U+000A)")],
        id="control-character",
    ),
    pytest.param(
        {"source": "ml-prod", "task_id": "\x00\x7f\x85"},
        [(None, "task_id", "found U+0000, U+007F, U+0085")],
        id="nul-del-c1",
    ),
    pytest.param(
        {"source": "ml-prod", "task_id": " padded"},
        [(None, "task_id", "must not start or end with whitespace")],
        id="padded-id",
    ),
    pytest.param(
        {"source": "ml-prod", "task_id": 42},
        [(None, "task_id", "must be a string")],
        id="id-not-a-string",
    ),
    pytest.param({"source": "ml-prod"}, [(None, "task_id", "is required")], id="missing-id"),
    pytest.param(
        {**GOOD, "labels": "a,b"},
        [(None, "labels", "must be a list of strings")],
        id="labels-not-a-list",
    ),
    pytest.param(
        {**GOOD, "labels": ["ok", 3]},
        [(None, "labels[1]", "must be a string")],
        id="label-not-a-string",
    ),
    pytest.param(
        {**GOOD, "labels": [f"l{n}" for n in range(21)]},
        [(None, "labels", "at most 20 labels (21 given)")],
        id="too-many-labels",
    ),
    pytest.param(
        {**GOOD, "labels": ["y" * 41]},
        [(None, "labels[0]", "is longer than 40 characters")],
        id="long-label",
    ),
    pytest.param(
        {**GOOD, "labels": ["two words"]},
        [(None, "labels[0]", "a label is one word")],
        id="label-with-space",
    ),
    pytest.param(
        {**GOOD, "labels": [""]}, [(None, "labels[0]", "must not be empty")], id="empty-label"
    ),
    pytest.param(
        {**GOOD, "note": "n" * 4001},
        [(None, "note", "is longer than 4000 characters")],
        id="long-note",
    ),
    pytest.param({**GOOD, "note": "a\x00b"}, [(None, "note", "found U+0000")], id="nul-in-note"),
    pytest.param({**GOOD, "note": 5}, [(None, "note", "must be a string")], id="note-not-a-string"),
    pytest.param(
        [GOOD, {**GOOD, "lables": ["x"], "extra": 1}],
        [
            (1, "lables", "unknown field; an item has only source, task_id, labels, note"),
            (1, "extra", "unknown field"),
        ],
        id="unknown-fields",
    ),
    pytest.param(
        {**GOOD, "k" * 1000: 1}, [(None, "k" * 79 + "…", "unknown field")], id="long-unknown-field"
    ),
    pytest.param(
        "ml-prod/1",
        [(None, None, "the body must be a JSON object or a list of them")],
        id="a-string",
    ),
    pytest.param(
        None, [(None, None, "the body must be a JSON object or a list of them")], id="null"
    ),
    pytest.param(
        [GOOD, "x"], [(1, None, "each item must be a JSON object")], id="item-not-an-object"
    ),
    pytest.param([], [(None, None, "the list is empty: post at least one task")], id="empty-list"),
    pytest.param(
        [{"source": "ml-prod", "task_id": str(n)} for n in range(501)],
        [(None, None, "501 items is too many: at most 500 per request")],
        id="too-many-items",
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_BODIES)
def test_a_bad_body_is_refused_with_each_problem_named_and_nothing_tracked(
    app, client, editor, body, expected
):
    answer = post(client, body, editor)
    assert answer.status_code == 400, answer.text
    refusal = answer.get_json()
    assert refusal["status"] == 400 and refusal["error"].startswith("Nothing was tracked: ")
    found = [(p["item"], p["field"], p["message"]) for p in refusal["problems"]]
    assert len(found) == len(expected), found
    for (item, field, message), (want_item, want_field, want_text) in zip(
        found, expected, strict=True
    ):
        assert (item, field) == (want_item, want_field)
        assert want_text in message
        # The summary names the item and field too.
        where = ": ".join(
            [*([f"item {item}"] if item is not None else []), *([field] if field else [])]
        )
        assert (f"{where}: {message}" if where else message) in refusal["error"]
    assert tasks(app) == [] and track_events(app) == []


def test_every_problem_of_every_item_is_reported_at_once(client, editor):
    body = [
        {"source": "nope", "task_id": "1"},
        {"task_id": ""},
        GOOD,
        {"source": "gone", "task_id": "2"},
    ]
    refusal = post(client, body, editor).get_json()
    pairs = [(p["item"], p["field"]) for p in refusal["problems"]]
    # Shape first (pydantic), then sources once the shapes are right.
    assert pairs == [(1, "source"), (1, "task_id")]
    fixed = [body[0], {"source": "ml-prod", "task_id": "3"}, GOOD, body[3]]
    refusal = post(client, fixed, editor).get_json()
    assert [(p["item"], p["field"]) for p in refusal["problems"]] == [(0, "source"), (3, "source")]
    assert refusal["error"].startswith("Nothing was tracked: item 0: source: no source is called")


def test_a_body_that_is_not_json_is_refused(app, client, editor):
    answer = client.post(
        URL, data=b'{"source": "ml-prod",', headers=editor, content_type="application/json"
    )
    assert answer.status_code == 400
    [problem] = answer.get_json()["problems"]
    assert problem["message"].startswith("the body is not JSON (EOF while parsing")
    deep = client.post(
        URL, data=b"[" * 5000 + b"]" * 5000, headers=editor, content_type="application/json"
    )
    assert deep.status_code == 400 and "the body is not JSON" in deep.get_json()["error"]
    bad_utf8 = client.post(
        URL, data=b'{"source": "\xff"}', headers=editor, content_type="application/json"
    )
    assert bad_utf8.status_code == 400
    assert tasks(app) == []


def test_a_body_not_sent_as_json_is_refused_with_415(client, editor):
    answer = client.post(URL, data={"source": "ml-prod", "task_id": "1"}, headers=editor)
    assert answer.status_code == 415
    assert answer.get_json() == {"error": push.NOT_JSON, "status": 415}


def test_a_body_over_the_limit_is_refused_with_413_unread(app, client, editor):
    items = [{"source": "ml-prod", "task_id": f"{n:0500d}"} for n in range(2100)]
    data = json.dumps(items).encode()
    assert len(data) > push.MAX_BODY_BYTES
    answer = client.post(URL, data=data, headers=editor, content_type="application/json")
    assert answer.status_code == 413
    assert answer.get_json() == {"error": push.TOO_LARGE, "status": 413}
    # Just under the limit is read (and refused here only for its item count).
    fits = json.dumps([{"source": "ml-prod", "task_id": "1", "note": "n" * 4000}] * 250).encode()
    assert len(fits) <= push.MAX_BODY_BYTES
    assert (
        client.post(URL, data=fits, headers=editor, content_type="application/json").status_code
        == 201
    )
    assert len(tasks(app)) == 1


def test_other_endpoints_keep_their_own_body_limits(app):
    assert app.config.get("MAX_CONTENT_LENGTH") is None


# -- who may push -----------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("editor", 201), ("admin", 201)])
def test_tokens_push_with_their_role(app, client, role, status):
    headers = bearer(create_token(app, f"{role}-token", role))
    answer = post(client, GOOD, headers)
    assert answer.status_code == status
    if status == 403:
        assert answer.get_json() == {
            "error": "This needs the editor role; you are viewer.",
            "status": 403,
        }
        assert tasks(app) == []


def test_no_or_a_wrong_token_is_a_401(app, client):
    for headers in ({}, bearer("tdk_" + "x" * 43)):
        answer = post(client, GOOD, headers)
        assert answer.status_code == 401
        assert answer.get_json()["error"].startswith("Sign in first")
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="Taskdeck"'
    assert tasks(app) == []


def test_a_signed_in_editor_pushes_with_the_csrf_header(app):
    editor = signed_in(app, "erin", "editor")
    refused = editor.post(URL, json=GOOD)
    assert refused.status_code == 400 and refused.get_json()["status"] == 400
    answer = editor.post(URL, json=GOOD, headers={"X-CSRF-Token": form_token(editor)})
    assert answer.status_code == 201
    [event] = track_events(app)
    assert event.actor == "erin" and event.actor_kind == "user"

    viewer = signed_in(app, "vic", "viewer")
    other = {"source": "ml-prod", "task_id": "by-viewer"}
    answer = viewer.post(URL, json=other, headers={"X-CSRF-Token": form_token(viewer)})
    assert answer.status_code == 403
    assert len(tasks(app)) == 1


def test_read_only_refuses_a_push_like_every_write(app_factory, ml_source):
    app = app_factory([ml_source], AUTH="local", READ_ONLY=True)
    with app.app_context():
        # The command line refuses writes under read-only too: the row is made directly.
        _, token = tokens.create_token("ci", Role.ADMIN)
        db.session.commit()
    answer = post(app.test_client(), GOOD, bearer(token))
    assert answer.status_code == 403
    assert "read-only" in answer.get_json()["error"]
    assert tasks(app) == []
