"""The task page's links and family timeline, from the cache alone (no upstream involved)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.access.people import form_token
from tests.access.people import signed_in
from tests.helpers import soup
from webapp.access import shares
from webapp.db import store
from webapp.db.models import AuditEvent
from webapp.db.models import TaskLink
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.links.family import GANTT_WIDTH


@pytest.fixture
def linked_app(app_factory, make_source):
    return seeded(app_factory, make_source)


def seeded(app_factory, make_source, **config):
    """A launcher task that started an ML task (tracked), one untracked found link, a
    not-found and an ambiguous id, and the ML task's model sibling (tracked)."""
    sources = [make_source("conductor", name="cd"), make_source("opensearch-ml", name="ml")]
    app = app_factory(sources, **config)
    now = utcnow()
    with app.app_context():
        seen = {}
        for source, task_id, state, started, took in [
            ("cd", "launcher", TaskState.SUCCEEDED, 600, 30),
            ("ml", "trained", TaskState.RUNNING, 570, None),
            ("ml", "deployed", TaskState.FAILED, 300, 100),
        ]:
            task, _ = store.track(source, task_id)
            created = now - timedelta(seconds=started)
            finished = created + timedelta(seconds=took) if took is not None else None
            store.apply_fetch(
                task,
                NormalizedTask(
                    task_id,
                    state,
                    state.value.upper(),
                    took is not None,
                    raw={},
                    created_at=created,
                    finished_at=finished,
                ),
                now,
            )
            seen[task_id] = task
        db.session.flush()
        launcher = seen["launcher"].id
        db.session.add_all(
            [
                TaskLink(
                    task_pk=launcher,
                    relation="launched",
                    target_task_id="trained",
                    target_source="ml",
                    target_provider="opensearch-ml",
                    status="found",
                    found_in="outputData.response.body.task_id",
                ),
                TaskLink(
                    task_pk=launcher,
                    relation="launched",
                    target_task_id="elsewhere-1",
                    target_source="ml",
                    target_provider="opensearch-ml",
                    status="found",
                    found_in="outputData.task_id",
                ),
                TaskLink(
                    task_pk=launcher,
                    relation="launched",
                    target_task_id="nowhere-1",
                    status="not_found",
                    found_in="outputData.other.task_id",
                ),
                TaskLink(
                    task_pk=launcher,
                    relation="launched",
                    target_task_id="twice-1",
                    status="ambiguous",
                    found_in="inputData.task_id",
                ),
                TaskLink(
                    task_pk=seen["trained"].id,
                    relation="same model",
                    target_task_id="deployed",
                    target_source="ml",
                    target_provider="opensearch-ml",
                    status="found",
                    found_in="listed upstream",
                ),
            ]
        )
        db.session.commit()
    return app


def rows(page):
    return {
        r.select("td")[1].get_text(strip=True): r for r in page.select("#task-family tr.task-link")
    }


def test_links_are_listed_with_state_source_and_what_was_found(linked_app):
    page = soup(linked_app.test_client().get("/tasks/cd/launcher"))
    found = rows(page)
    assert set(found) == {"trained", "elsewhere-1", "nowhere-1", "twice-1"}
    trained = found["trained"]
    assert trained.select_one("a")["href"] == "/tasks/ml/trained"
    assert "running" in trained.select_one(".badge-state").get_text()
    assert "outputData.response.body.task_id" in trained.get_text()
    assert "not tracked" in found["elsewhere-1"].get_text()
    assert found["elsewhere-1"].select_one("button[data-track-link]") is not None
    assert "not found on any source" in found["nowhere-1"].get_text()
    assert "on more than one source" in found["twice-1"].get_text()
    assert all(r.select_one("button") is None for k, r in found.items() if k != "elsewhere-1")


def test_the_other_side_shows_where_a_task_came_from(linked_app):
    page = soup(linked_app.test_client().get("/tasks/ml/trained"))
    found = rows(page)
    assert "launched by" in found["launcher"].get_text()
    assert found["launcher"].select_one("a")["href"] == "/tasks/cd/launcher"
    assert "same model" in found["deployed"].get_text()


def test_the_family_timeline_is_bars_and_text(linked_app):
    page = soup(linked_app.test_client().get("/tasks/ml/trained"))
    family = page.select("#task-family table.family-gantt tbody tr")
    # launcher (oldest first), trained (this one), deployed.
    names = [r.select_one("th .task-id").get_text() for r in family]
    assert names == ["launcher", "trained", "deployed"]
    assert "this task" in family[1].select_one("th").get_text()
    assert [r.select_one("td .badge-state").get_text(strip=True)[-7:] for r in family][
        1
    ] == "running"
    assert "so far" in family[1].get_text() and "so far" not in family[0].get_text()
    bars = [r.select_one("svg.gantt-bar rect") for r in family]
    assert [b["class"] for b in bars] == [
        ["seg", "state-succeeded"],
        ["seg", "state-running"],
        ["seg", "state-failed"],
    ]
    x = [float(b["x"]) for b in bars]
    width = [float(b["width"]) for b in bars]
    # 600 s from the first creation to now: the launcher starts at 0 and runs 30 s (50 units),
    # the running task reaches the right edge, the failed one spans 100 of 600 s.
    assert x[0] == 0 and width[0] == pytest.approx(50, abs=1)
    assert x[1] + width[1] == pytest.approx(GANTT_WIDTH, abs=1)
    assert x[2] == pytest.approx(500, abs=1) and width[2] == pytest.approx(166.7, abs=1)
    # Accessible without the pictures: the bars are decoration beside a table of the facts.
    assert all(r.select_one("svg")["aria-hidden"] == "true" for r in family)
    assert page.select_one("#task-family table.family-gantt")["aria-labelledby"]
    # Nothing inline for the Content-Security-Policy to refuse.
    section = page.select_one("#task-family")
    assert not section.select("[style]") and not section.select("style, script")


def test_a_task_alone_has_no_timeline(linked_app):
    with linked_app.app_context():
        task, _ = store.track("ml", "lonely")
        db.session.commit()
    page = soup(linked_app.test_client().get("/tasks/ml/lonely"))
    assert page.select_one("#task-family table.family-gantt") is None
    assert "No linked tasks found yet" in page.select_one("#task-family").get_text()


def test_the_status_poll_refreshes_the_family_block(linked_app):
    response = linked_app.test_client().get("/tasks/ml/trained/status?v=0")
    block = soup(response).select_one("#task-family")
    assert block is not None and block["hx-swap-oob"] == "true"


def test_a_share_link_shows_nothing_the_task_leads_to(linked_app):
    with linked_app.test_request_context():
        task = store.get_task("cd", "launcher")
        _, token = shares.create_link(task, "1h")
        db.session.commit()
    page = soup(linked_app.test_client().get(f"/share/{token}"))
    assert page.select_one("h1 .task-id").get_text() == "launcher"
    assert page.select_one("#task-family") is None
    assert "trained" not in page.get_text()


def test_tracking_a_link_is_for_editors_and_only_for_trackable_links(app_factory, make_source):
    app = seeded(app_factory, make_source, AUTH="local")
    with app.app_context():
        ids = {link.target_task_id: link.id for link in db.session.scalars(sa.select(TaskLink))}
    path = "/tasks/cd/launcher"
    viewer = signed_in(app, "vera", "viewer")
    assert soup(viewer.get(path)).select_one("button[data-track-link]") is None
    track_url = f"{path}/links/{ids['elsewhere-1']}/track"
    assert viewer.post(track_url, data={"csrf_token": form_token(viewer)}).status_code == 403

    editor = signed_in(app, "eddie", "editor")
    token = form_token(editor)
    assert (
        editor.post(
            f"{path}/links/{ids['nowhere-1']}/track", data={"csrf_token": token}
        ).status_code
        == 409
    )
    assert editor.post(f"{path}/links/999999/track", data={"csrf_token": token}).status_code == 404
    assert editor.post(track_url, data={}).status_code == 400  # no CSRF token
    answer = editor.post(track_url, data={"csrf_token": token}, headers={"HX-Request": "true"})
    assert answer.status_code == 200
    block = soup(answer).select_one("#task-family")
    assert block is not None and block.select_one("button[data-track-link]") is None
    with app.app_context():
        tracked = store.get_task("ml", "elsewhere-1")
        assert tracked is not None and tracked.tracked_via == "link"
        assert tracked.next_poll_at is not None  # due: the refresher fetches it next
        events = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "task.track")
        ).all()
        assert [(e.actor, e.target, e.details) for e in events] == [
            ("eddie", "ml/elsewhere-1", {"via": "link"})
        ]
    # Tracked now: a second post is refused, not tracked twice.
    assert editor.post(track_url, data={"csrf_token": token}).status_code == 409


def test_untracking_a_task_forgets_its_links(linked_app):
    with linked_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TaskLink)) == 5
        store.untrack(store.get_task("cd", "launcher"))
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TaskLink)) == 1
    # The ML task's page no longer says where it came from.
    page = soup(linked_app.test_client().get("/tasks/ml/trained"))
    assert "launcher" not in page.select_one("#task-family").get_text()


def test_the_task_json_lists_linked_tasks_under_their_own_key(linked_app):
    client = linked_app.test_client()
    data = client.get("/api/v1/tasks/cd/launcher").get_json()
    assert "self" in data["links"] and "trained" not in data["links"]  # `links` is unchanged
    linked = {item["task_id"]: item for item in data["linked"]}
    assert linked["trained"] == {
        "relation": "launched",
        "task_id": "trained",
        "source": "ml",
        "status": "found",
        "found_in": "outputData.response.body.task_id",
        "state": "running",
    }
    assert linked["nowhere-1"]["status"] == "not_found" and linked["nowhere-1"]["state"] is None
    back = {i["task_id"]: i for i in client.get("/api/v1/tasks/ml/trained").get_json()["linked"]}
    assert (back["launcher"]["relation"], back["launcher"]["source"]) == ("launched by", "cd")
    assert (back["deployed"]["relation"], back["deployed"]["state"]) == ("same model", "failed")
    # Pages of tasks leave it out, as they leave out history.
    listed = client.get("/api/v1/tasks?limit=10").get_json()["tasks"]
    assert all(task["linked"] is None for task in listed)
    document = client.get("/api/v1/openapi.json").get_json()
    ref = document["paths"]["/api/v1/tasks/{source}/{task_id}"]["get"]["responses"]["200"]
    name = ref["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schemas = document["components"]["schemas"]
    assert "linked" in schemas[name]["properties"]
    assert any(set(s.get("properties", {})) >= {"relation", "found_in"} for s in schemas.values())
